//! The PostgreSQL schema, as versioned migrations embedded in the binary,
//! applied at start in one transaction under an advisory lock: workers that
//! start together migrate once, and a worker never runs on a schema newer
//! than it knows.
//!
//! The tables are the embedded engine's key prefixes made relational:
//! `tokens` holds each token's one sealed record (the same bytes, same
//! associated data as the embedded store) beside typed identity, state and
//! expiry columns; the identity is unique among live tokens (one tokenId
//! per identity, across every worker); `refresh` and `upstream_jobs` hold
//! the refresh engine's records with their due times indexed;
//! `token_counts` keeps the counts by (state, scope, integration) in a few
//! shards, so that the console reads a handful of rows, never the tokens.

/// The lock every migrating worker takes (`mmt` in ASCII).
pub(super) const MIGRATION_LOCK: i64 = 0x006d_6d74;

/// Every migration, in order: version `i + 1` is `MIGRATIONS[i]`.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE mmt_meta (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE tokens (
    token_id    text COLLATE "C" PRIMARY KEY,
    client_id   text COLLATE "C" NOT NULL,
    end_user_id text COLLATE "C",
    broker_type text COLLATE "C" NOT NULL,
    scope       text NOT NULL,
    account_id  text COLLATE "C",
    state       text NOT NULL CHECK (state IN ('active', 'reauth_required', 'revoked')),
    expiry_at   bigint,
    record      bytea NOT NULL
);
CREATE UNIQUE INDEX tokens_identity
    ON tokens (client_id, end_user_id, broker_type, scope, account_id)
    WHERE state <> 'revoked';
CREATE INDEX tokens_expiry ON tokens (expiry_at, token_id) WHERE expiry_at IS NOT NULL;

CREATE TABLE processed (
    key   bytea PRIMARY KEY,
    reply bytea NOT NULL,
    at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE refresh (
    token_id             text COLLATE "C" PRIMARY KEY,
    due_at               bigint,
    attempts             integer NOT NULL,
    lease_id             bigint,
    lease_sent_at        bigint,
    lease_until          bigint,
    last_error           text,
    last_refreshed_at    bigint,
    last_failed_event_at bigint
);
CREATE INDEX refresh_due ON refresh (due_at, token_id) WHERE due_at IS NOT NULL;
CREATE INDEX refresh_failing ON refresh (token_id) WHERE attempts > 0;

CREATE TABLE upstream_jobs (
    token_id    text COLLATE "C" PRIMARY KEY,
    client_id   text NOT NULL,
    broker_type text NOT NULL,
    scope       text NOT NULL,
    created_at  bigint NOT NULL,
    due_at      bigint NOT NULL,
    attempts    integer NOT NULL,
    sealed      bytea NOT NULL,
    wrapped     bytea NOT NULL
);

CREATE TABLE token_counts (
    state       text NOT NULL,
    scope       text NOT NULL,
    broker_type text COLLATE "C" NOT NULL,
    shard       smallint NOT NULL,
    n           bigint NOT NULL,
    PRIMARY KEY (state, scope, broker_type, shard)
);
"#,
    r#"
-- The audit log (CONTRACT.md §12): one chain per writer slot of each worker
-- (`chain`), each line naming the one before it by an HMAC.
CREATE TABLE audit (
    chain text COLLATE "C" NOT NULL,
    seq   bigint NOT NULL,
    at    timestamptz NOT NULL DEFAULT now(),
    line  text NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE FUNCTION mmt_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION mmt_audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION mmt_audit_append_only();
"#,
    r#"
-- Key rotation (CONTRACT.md §11): the key that wraps each live token's and
-- each upstream job's data key. Every row before key rings is key 0 (a
-- constant default: no table rewrite).
ALTER TABLE tokens ADD COLUMN key_id bigint NOT NULL DEFAULT 0;
ALTER TABLE upstream_jobs ADD COLUMN key_id bigint NOT NULL DEFAULT 0;
"#,
];

/// How many shards the counts of one group are spread over: concurrent
/// writers of one group rarely update the same row.
pub(super) const COUNT_SHARDS: i16 = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one_and_never_empty() {
        assert!(!MIGRATIONS.is_empty());
        assert!(
            MIGRATIONS
                .iter()
                .all(|m| m.contains("CREATE") || m.contains("ALTER"))
        );
    }

    /// A store written at schema 1 (before the audit table and key rings:
    /// its one key's check value in `key_check`) opens, its tokens open
    /// with the key, and it is migrated to the audit log and key ids.
    #[test]
    fn a_store_of_schema_1_opens_and_gains_the_audit_log_and_key_ids() {
        use crate::store::crypto::KeyRing;
        use crate::store::testing::{meta, secrets};
        use crate::store::{Decision, Found, PgConfig, Store};
        use mmt_shared::wire::Scope;

        let Some(db) = mmt_pg_fixture::TestDatabase::create("schema-1") else {
            return;
        };
        let key_file = tempfile::NamedTempFile::new().expect("key file");
        std::fs::remove_file(key_file.path()).expect("room for the key");
        let (key, _) = KeyRing::load_or_create(key_file.path()).expect("key");
        let config = PgConfig::new(db.url.clone());
        let m = meta("acme", "u1", Scope::Read);
        {
            let store = Store::connect(&config, key).expect("connects");
            store
                .write(|tx| {
                    tx.put_token("tok_1", &m, None, &secrets())?;
                    Ok(Decision::Commit(()))
                })
                .expect("writes");
        }
        // Back to schema 1, as a worker before the audit log and key rings
        // left it.
        let key = KeyRing::load(key_file.path(), key_file.path()).expect("key");
        db.execute(&format!(
            "DROP TABLE audit; DROP FUNCTION mmt_audit_append_only();
             ALTER TABLE tokens DROP COLUMN key_id; ALTER TABLE upstream_jobs DROP COLUMN key_id;
             DELETE FROM mmt_meta WHERE name = 'keyring';
             INSERT INTO mmt_meta (name, value) VALUES ('key_check', decode('{}', 'hex'));
             DELETE FROM mmt_schema WHERE version > 1;",
            hex::encode(key.check_value(0).expect("kcv"))
        ));
        let store = Store::connect(&config, key).expect("a schema 1 store opens");
        let Found::Live {
            meta: got,
            sealed,
            wrapped,
        } = store.find("tok_1").expect("reads")
        else {
            panic!("the token written at schema 1 is live");
        };
        assert_eq!(got, m);
        store
            .open_secrets("tok_1", &got, &sealed, &wrapped)
            .expect("its secrets open");
        store
            .write(|tx| {
                tx.revoke("tok_1", &m, 2_000)?;
                tx.audit(crate::rules::audit::Event::default(), Some("tok_1"))?;
                Ok(Decision::Commit(()))
            })
            .expect("writes with an audit line");
        assert_eq!(
            db.query_texts(
                "SELECT max(version)::text || ' ' || (SELECT count(*) FROM audit) FROM mmt_schema"
            ),
            vec![Some(format!("{} 1", MIGRATIONS.len()))]
        );
        assert_eq!(
            db.query_texts("SELECT key_id::text FROM tokens"),
            vec![Some("0".to_owned())]
        );
        assert_eq!(
            db.query_texts("SELECT string_agg(name, ',' ORDER BY name) FROM mmt_meta"),
            vec![Some("keyring".to_owned())]
        );
    }
}
