"""The offload form (global shortcut and Home button), its live target search, and the message
shortcut "Explain with xenbot".

What must answer inside Slack's 3 seconds answers in the ack: the options of the target search
(from the inventory cache, with a deadline) and a submission's ``response_action`` (field
checks without I/O go back as ``errors``). Everything that reads a pool or writes the database
runs on the work pool afterwards and reaches the person with ``views.update``, so a slow pool
never holds the request thread.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.domain import names
from bot.domain.slack_text import escape
from bot.render import forms as render
from bot.render.changes import nothing_to_do
from bot.services.changes import ChangeError
from bot.services.forms import FormService, OffloadForm, PolicyForm
from bot.wiring import Services
from bot.xen.errors import XenError
from handlers.delivery import deliver
from handlers.work import WorkPool

log = logging.getLogger(__name__)

SHORTCUT = "xenbot_change_offloading"
OPTIONS_DEADLINE = 2.0  # seconds; Slack waits 3 for the options of an external select


def _selected(values: dict[str, Any], block: str, action: str) -> dict[str, Any] | None:
    element = (values.get(block) or {}).get(action) or {}
    option = element.get("selected_option")
    return option if isinstance(option, dict) else None


def form_of(view: dict[str, Any]) -> OffloadForm:
    """The form as submitted: the kind it was rendered for (private_metadata) and the inputs."""
    meta = _metadata(view)
    values = (view.get("state") or {}).get("values") or {}
    kind = str(meta.get("kind") or "vm")
    pool = (_selected(values, render.POOL_BLOCK, render.POOL_ACTION) or {}).get("value") or meta.get("pool", "")
    target = _selected(values, render.target_block(kind), render.TARGET_ACTION) or {}
    modes = ((values.get(render.modes_block(kind)) or {}).get(render.MODES_ACTION) or {}).get("selected_options")
    action = (_selected(values, render.ACTION_BLOCK, render.ACTION_ACTION) or {}).get("value", "")
    reason = ((values.get(render.REASON_BLOCK) or {}).get(render.REASON_ACTION) or {}).get("value")
    return OffloadForm(str(pool), kind, str(target.get("value", "")),
                       str((target.get("text") or {}).get("text", "")),
                       tuple(str(o.get("value")) for o in modes or ()), str(action), reason or None)


def policy_of(view: dict[str, Any]) -> PolicyForm:
    """The policy form as submitted."""
    values = (view.get("state") or {}).get("values") or {}

    def text(block: str) -> str:
        return str(((values.get(block) or {}).get(block) or {}).get("value") or "").strip()

    def words(block: str) -> tuple[str, ...]:
        return tuple(w for w in text(block).replace(" ", ",").split(",") if w)

    pool = (_selected(values, render.POOL_BLOCK, render.POOL_ACTION) or {}).get("value") or _metadata(view).get("pool")
    modes = ((values.get(render.modes_block("pif")) or {}).get(render.MODES_ACTION) or {}).get("selected_options")
    return PolicyForm(
        str(pool or ""), str((_selected(values, render.POLICY_TARGET, render.POLICY_TARGET) or {}).get("value", "")),
        tuple(str(o.get("value")) for o in modes or ()),
        str((_selected(values, render.ACTION_BLOCK, render.ACTION_ACTION) or {}).get("value", "")),
        str((_selected(values, render.POLICY_MODE, render.POLICY_MODE) or {}).get("value", "")),
        words(render.EXCLUDE_NAMES), words(render.EXCLUDE_TAGS), text(render.HOST) or None)


def _metadata(view: dict[str, Any]) -> dict[str, Any]:
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def _problem(exc: Exception) -> str | None:
    """What a person is told when planning or requesting failed; None for an unexpected failure."""
    if isinstance(exc, ChangeError | names.LookupProblem):
        return str(exc)
    if isinstance(exc, XenError):
        return f"The pool did not answer as expected: {exc}. Nothing was changed."
    return None


def register(app: App, services: Services, work: WorkPool) -> FormService:
    forms = FormService(services.changes, services.alerts, services.access, services.router.members_of,
                        services.policies, pools=services.gateways.names())
    search_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="xenbot-options")

    def update(client: WebClient, view_id: str, view: dict[str, Any]) -> None:
        try:
            client.views_update(view_id=view_id, view=view)
        except (SlackApiError, SlackClientError) as exc:
            log.warning("views.update of %s failed: %s", view_id, exc)

    def safely(client: WebClient, view_id: str, what: str, run: Callable[[], dict[str, Any]]) -> None:
        try:
            view = run()
        except Exception as exc:
            problem = _problem(exc)
            if problem is None:
                reference = secrets.token_hex(4)
                log.exception("%s failed (reference %s)", what, reference)
                problem = f"Something went wrong on xenbot's side (reference {reference}); nothing was changed."
            view = render.message_view("Change offloading", ":no_entry: " + escape(problem))
        update(client, view_id, view)

    # -- opening the form ----------------------------------------------------------------

    def open_form(body: dict[str, Any], client: WebClient) -> None:
        user = (body.get("user") or {}).get("id", "")
        decision = forms.may_use(user)
        policy = any(a.get("action_id") == render.OPEN_POLICY for a in body.get("actions") or ())
        view = (forms.new_policy_form() if policy else forms.new_form()) if decision.allowed else \
            render.message_view("Change offloading", f":no_entry: Sorry, {escape(decision.reason)}.")
        try:
            client.views_open(trigger_id=body.get("trigger_id", ""), view=view)
        except (SlackApiError, SlackClientError) as exc:
            log.warning("views.open for %s failed: %s", user, exc)

    def on_open(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        work.submit(open_form, body, client)  # the trigger_id is good for 3 s: submitted at once

    app.shortcut(SHORTCUT)(on_open)
    app.action(render.OPEN_FORM)(on_open)
    app.action(render.OPEN_POLICY)(on_open)

    def on_scope(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """The scope kind changed: the form again, with that kind's target search and modes."""
        ack()
        view = body.get("view") or {}
        kind = str((action.get("selected_option") or {}).get("value") or "vm")
        pool = form_of(view).pool
        work.submit(update, client, view.get("id", ""), forms.new_form(pool, kind))

    app.action(render.SCOPE_ACTION)(on_scope)

    # -- the live target search ---------------------------------------------------------------

    def on_options(ack: Ack, body: dict[str, Any]) -> None:
        user = (body.get("user") or {}).get("id", "")
        kind = str(body.get("block_id", "")).removeprefix(f"{render.TARGET_BLOCK}-") or "vm"
        pool = form_of(body.get("view") or {}).pool
        if not forms.may_use(user).allowed:
            ack(options=[])
            return
        future = search_pool.submit(forms.search, pool, kind, str(body.get("value") or ""))
        try:
            found = future.result(timeout=OPTIONS_DEADLINE)
        except FutureTimeout:
            log.warning("target search for %r in %s took over %.1f s", body.get("value"), pool, OPTIONS_DEADLINE)
            found = []
        ack(**render.options(found))

    app.options(render.TARGET_ACTION)(on_options)

    # -- submissions ------------------------------------------------------------------------

    def plan_view(form: OffloadForm) -> dict[str, Any]:
        """The plan, or the form again with what stood in the way on top (its inputs start over)."""
        try:
            plan = forms.plan(form)
        except Exception as exc:
            problem = _problem(exc)
            if problem is None:
                raise
            return render.offload_form(forms.pools, form.pool, form.kind, [problem])
        if not plan.interfaces:
            return render.offload_form(forms.pools, form.pool, form.kind, [nothing_to_do(plan).text])
        return render.plan_summary(plan, form.metadata())

    def admitted(ack: Ack, body: dict[str, Any], title: str) -> str | None:
        """The submitter's user id, or None after answering (in the ack) that they may not use forms."""
        user = str((body.get("user") or {}).get("id", ""))
        decision = forms.may_use(user)
        if decision.allowed:
            return user
        ack(response_action="update", view=render.message_view(title, f"Sorry, {decision.reason}."))
        return None

    def on_form(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        user = admitted(ack, body, "Change offloading")
        if user is None:
            return
        form = form_of(view)
        errors = form.problems()
        if errors:
            ack(response_action="errors", errors=errors)
            return
        ack(response_action="update", view=render.working("Planning against live state"))
        work.submit(safely, client, view.get("id", ""), "offload form plan", lambda: plan_view(form))

    def request_into(view_id: str, user: str, form: OffloadForm, client: WebClient) -> None:
        safely(client, view_id, "offload form request", lambda: render.answered(forms.request(user, form)))

    def on_summary(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        user = admitted(ack, body, "Change offloading")
        if user is None:
            return
        form = OffloadForm.from_metadata(_metadata(view))
        ack(response_action="update", view=render.working("Requesting approval"))
        work.submit(request_into, view.get("id", ""), user, form, client)

    def policy_into(view_id: str, user: str, form: PolicyForm, client: WebClient) -> None:
        safely(client, view_id, "policy form request", lambda: render.answered(forms.request_policy(user, form)))

    def on_policy(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        user = admitted(ack, body, "Offload policy")
        if user is None:
            return
        form = policy_of(view)
        errors = form.problems()
        if errors:
            ack(response_action="errors", errors=errors)
            return
        ack(response_action="update", view=render.working("Requesting approval"))
        work.submit(policy_into, view.get("id", ""), user, form, client)

    app.view(render.POLICY_CALLBACK)(on_policy)
    app.view(render.FORM_CALLBACK)(on_form)
    app.view(render.SUMMARY_CALLBACK)(on_summary)

    # -- Explain with xenbot ------------------------------------------------------------------

    def explain(body: dict[str, Any], respond: Respond | None, client: WebClient) -> None:
        user = (body.get("user") or {}).get("id", "")
        channel = (body.get("channel") or {}).get("id")
        decision = forms.may_use(user)
        if not decision.allowed:
            reply = render.refused(decision.reason)
        else:
            try:
                # A shortcut's message names no channel of its own; the parser may want it.
                reply = forms.explain_message({**(body.get("message") or {}), "channel": channel})
            except Exception as exc:
                problem = _problem(exc)
                if problem is None:
                    reference = secrets.token_hex(4)
                    log.exception("explain a message failed (reference %s)", reference)
                    problem = f"Something went wrong on xenbot's side (reference {reference})."
                reply = render.refused(problem)
        deliver(reply, client=client, respond=respond, channel_id=channel, user_id=user)

    def on_explain(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()
        work.submit(explain, body, respond if body.get("response_url") else None, client)

    app.shortcut(render.EXPLAIN_CALLBACK)(on_explain)
    return forms
