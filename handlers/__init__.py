"""Slack listeners: the only package that imports slack_bolt / slack_sdk.

Listeners are thin: parse what Slack sent, ack within three seconds, hand the
work to the router or a service, and deliver the reply.
"""
