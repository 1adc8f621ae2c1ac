-- Two PostgreSQL roles for xenbot (docs/security.md): the owner runs migrations, the bot only
-- reads and writes rows. Only a table's owner (or a superuser) may ALTER it, so the bot's role
-- cannot DISABLE TRIGGER or DROP TRIGGER on audit_event.
--
-- Part 1, as a superuser (psql -U postgres), once per server. Replace the passwords.
CREATE ROLE xenbot_owner LOGIN PASSWORD 'CHANGE-ME-OWNER';
CREATE ROLE xenbot_bot LOGIN PASSWORD 'CHANGE-ME-BOT';
CREATE DATABASE xenbot OWNER xenbot_owner;

-- Part 2, in the xenbot database as xenbot_owner (psql -U xenbot_owner xenbot), before the
-- first `xenbot db upgrade`: what the owner creates from now on, the bot may use, and no more.
REVOKE ALL ON DATABASE xenbot FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE xenbot TO xenbot_bot;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO xenbot_bot;
ALTER DEFAULT PRIVILEGES FOR ROLE xenbot_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO xenbot_bot;
ALTER DEFAULT PRIVILEGES FOR ROLE xenbot_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO xenbot_bot;

-- Part 3, as xenbot_owner after each `xenbot db upgrade` (optional: the triggers refuse these
-- anyway; without the privilege the refusal no longer depends on them).
REVOKE UPDATE, DELETE, TRUNCATE ON audit_event, audit_chain_key FROM xenbot_bot;
