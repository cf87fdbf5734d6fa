// The schema, as numbered migrations applied in order by SqlStore::Migrate().
//
// Rules: never edit or renumber a migration that has been released; add a new one at the end.
// Write SQL both SQLite and PostgreSQL accept; where a type differs, use a token that
// MigrationSql() replaces: @ID@ (an auto-increment primary key that is never reused) and @BLOB@
// (bytes). Times are BIGINT microseconds since the Unix epoch, UTC; states are their Name() text.

#include <string>

#include "store/internal/sql.h"

namespace gantry::store::internal {

const std::vector<Migration>& Migrations() {
  static const std::vector<Migration> kMigrations = {
      {1, "ledger, runs, logs, deliveries, audit", R"sql(
CREATE TABLE runs (
  id @ID@,
  repo TEXT NOT NULL,
  pipeline TEXT NOT NULL,
  commit_sha TEXT NOT NULL,
  ref TEXT NOT NULL,
  event TEXT NOT NULL,
  delivery_id TEXT NOT NULL,
  state TEXT NOT NULL,
  worker TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  message TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  started_at BIGINT,
  finished_at BIGINT,
  updated_at BIGINT NOT NULL
);
CREATE INDEX runs_by_state ON runs (state, id);
CREATE INDEX runs_by_pipeline ON runs (pipeline, id);
CREATE UNIQUE INDEX runs_by_delivery ON runs (pipeline, delivery_id) WHERE delivery_id <> '';

CREATE TABLE steps (
  id @ID@,
  run_id BIGINT NOT NULL REFERENCES runs (id),
  name TEXT NOT NULL,
  state TEXT NOT NULL,
  exit_code INTEGER,
  started_at BIGINT,
  finished_at BIGINT,
  updated_at BIGINT NOT NULL,
  UNIQUE (run_id, name)
);

CREATE TABLE log_chunks (
  run_id BIGINT NOT NULL REFERENCES runs (id),
  step TEXT NOT NULL,
  seq BIGINT NOT NULL,
  data @BLOB@ NOT NULL,
  written_at BIGINT NOT NULL,
  PRIMARY KEY (run_id, step, seq)
);

CREATE TABLE releases (
  id @ID@,
  app TEXT NOT NULL,
  source_revision TEXT NOT NULL,
  config_revision TEXT NOT NULL,
  started_by TEXT NOT NULL,
  run_id BIGINT REFERENCES runs (id),
  note TEXT NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE INDEX releases_by_app ON releases (app, id);

CREATE TABLE release_images (
  release_id BIGINT NOT NULL REFERENCES releases (id),
  name TEXT NOT NULL,
  digest TEXT NOT NULL,
  PRIMARY KEY (release_id, name)
);

CREATE TABLE targets (
  release_id BIGINT NOT NULL REFERENCES releases (id),
  env TEXT NOT NULL,
  cluster TEXT NOT NULL,
  state TEXT NOT NULL,
  message TEXT NOT NULL,
  sync_result TEXT NOT NULL,
  version BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  finished_at BIGINT,
  PRIMARY KEY (release_id, env, cluster)
);
CREATE INDEX targets_by_place ON targets (env, cluster, release_id);

CREATE TABLE approvals (
  release_id BIGINT NOT NULL REFERENCES releases (id),
  env TEXT NOT NULL,
  approved_by TEXT NOT NULL,
  approved_at BIGINT NOT NULL,
  PRIMARY KEY (release_id, env)
);

CREATE TABLE deliveries (
  provider TEXT NOT NULL,
  delivery_id TEXT NOT NULL,
  received_at BIGINT NOT NULL,
  PRIMARY KEY (provider, delivery_id)
);
CREATE INDEX deliveries_by_age ON deliveries (received_at);

CREATE TABLE audit (
  id @ID@,
  at BIGINT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  object TEXT NOT NULL,
  details TEXT NOT NULL
);
)sql"},
      {2, "run trust, approval and one run per (repository, ref, commit, event)", R"sql(
ALTER TABLE runs ADD COLUMN trusted INTEGER NOT NULL DEFAULT 1;
ALTER TABLE runs ADD COLUMN approved_by TEXT NOT NULL DEFAULT '';
CREATE INDEX runs_by_trust ON runs (state, trusted, id);

CREATE TABLE run_keys (
  pipeline TEXT NOT NULL,
  repo TEXT NOT NULL,
  ref TEXT NOT NULL,
  commit_sha TEXT NOT NULL,
  event TEXT NOT NULL,
  run_id BIGINT NOT NULL REFERENCES runs (id),
  PRIMARY KEY (pipeline, repo, ref, commit_sha, event)
);
INSERT INTO run_keys (pipeline, repo, ref, commit_sha, event, run_id)
  SELECT pipeline, repo, ref, commit_sha, event, MIN(id) FROM runs
  WHERE commit_sha <> '' AND event <> 'manual' GROUP BY pipeline, repo, ref, commit_sha, event;
)sql"},
      {3, "a pull request run's head branch", R"sql(
ALTER TABLE runs ADD COLUMN head_ref TEXT NOT NULL DEFAULT '';
)sql"},
      {4, "the progress of a run's release pipeline, so a restarted server resumes it", R"sql(
CREATE TABLE release_progress (
  run_id BIGINT PRIMARY KEY REFERENCES runs (id),
  stage TEXT NOT NULL,
  data TEXT NOT NULL,
  version BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
)sql"},
      {5, "API tokens, role bindings, and the audit log's source, result and project", R"sql(
CREATE TABLE api_tokens (
  id @ID@,
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  owner TEXT NOT NULL,
  roles TEXT NOT NULL,
  secret_sha256 TEXT NOT NULL UNIQUE,
  created_by TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT,
  last_used_at BIGINT,
  revoked_at BIGINT,
  revoked_by TEXT NOT NULL
);
CREATE INDEX api_tokens_by_owner ON api_tokens (owner, id);

CREATE TABLE role_bindings (
  subject_kind TEXT NOT NULL,
  subject TEXT NOT NULL,
  role TEXT NOT NULL,
  project TEXT NOT NULL,
  created_by TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (subject_kind, subject, role, project)
);

ALTER TABLE audit ADD COLUMN source TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN result TEXT NOT NULL DEFAULT 'ok';
ALTER TABLE audit ADD COLUMN project TEXT NOT NULL DEFAULT '';
CREATE INDEX audit_by_at ON audit (at, id);
)sql",
       R"sql(
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE refused'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: DELETE refused'); END;
)sql",
       R"sql(
CREATE FUNCTION gantry_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the audit log is append-only: % refused', TG_OP;
END
$$;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
  FOR EACH ROW EXECUTE FUNCTION gantry_audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
  FOR EACH STATEMENT EXECUTE FUNCTION gantry_audit_append_only();
)sql"},
      {6, "the Project each release was made under", R"sql(
ALTER TABLE releases ADD COLUMN project TEXT NOT NULL DEFAULT '';
)sql"},
      {7, "a run's retry_of, and each step's needs and attempts (the run's DAG)", R"sql(
ALTER TABLE runs ADD COLUMN retry_of BIGINT;
ALTER TABLE steps ADD COLUMN needs TEXT NOT NULL DEFAULT '';
ALTER TABLE steps ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
)sql"},
      {8, "the notifications outbox", R"sql(
CREATE TABLE notifications (
  id @ID@,
  event_id TEXT NOT NULL,
  subscription TEXT NOT NULL,
  provider TEXT NOT NULL,
  trigger_name TEXT NOT NULL,
  project TEXT NOT NULL,
  app TEXT NOT NULL,
  environment TEXT NOT NULL,
  subject TEXT NOT NULL,
  body TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  last_error TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  next_attempt_at BIGINT NOT NULL,
  deadline BIGINT NOT NULL,
  finished_at BIGINT,
  UNIQUE (subscription, event_id)
);
CREATE INDEX notifications_due ON notifications (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX notifications_by_state ON notifications (state, id);
)sql"},
      {9, "the forge commit-status outbox", R"sql(
CREATE TABLE forge_statuses (
  id @ID@,
  forge TEXT NOT NULL,
  repo TEXT NOT NULL,
  sha TEXT NOT NULL,
  context TEXT NOT NULL,
  state TEXT NOT NULL,
  description TEXT NOT NULL,
  target_url TEXT NOT NULL,
  delivery TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  last_error TEXT NOT NULL,
  version BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  next_attempt_at BIGINT NOT NULL,
  deadline BIGINT NOT NULL,
  UNIQUE (forge, repo, sha, context)
);
CREATE INDEX forge_statuses_due ON forge_statuses (next_attempt_at, id) WHERE delivery = 'pending';
)sql"},
      {10, "the supply-chain digests of a release's images", R"sql(
ALTER TABLE release_images ADD COLUMN signature TEXT NOT NULL DEFAULT '';
ALTER TABLE release_images ADD COLUMN provenance TEXT NOT NULL DEFAULT '';
ALTER TABLE release_images ADD COLUMN sbom TEXT NOT NULL DEFAULT '';
)sql"},
      {11, "leases: a running run's claim expires unless renewed; named leases for scheduled work", R"sql(
ALTER TABLE runs ADD COLUMN lease_expires_at BIGINT;
CREATE INDEX runs_by_lease ON runs (lease_expires_at) WHERE state = 'running';
CREATE TABLE leases (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  expires_at BIGINT NOT NULL
);
)sql"},
      {12, "releases in pull-request mode: the pull request of a release, and the merge outbox", R"sql(
ALTER TABLE releases ADD COLUMN pull_request BIGINT NOT NULL DEFAULT 0;
ALTER TABLE releases ADD COLUMN pull_request_url TEXT NOT NULL DEFAULT '';
CREATE TABLE pull_merges (
  id @ID@,
  forge TEXT NOT NULL,
  repo TEXT NOT NULL,
  number BIGINT NOT NULL,
  sha TEXT NOT NULL,
  method TEXT NOT NULL,
  required_checks TEXT NOT NULL,
  release_id BIGINT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  last_error TEXT NOT NULL,
  version BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  next_attempt_at BIGINT NOT NULL,
  deadline BIGINT NOT NULL,
  UNIQUE (forge, repo, number)
);
CREATE INDEX pull_merges_due ON pull_merges (next_attempt_at, id) WHERE state = 'pending';
)sql"},
      {13, "remote workers: a run's labels, its changed paths, and a cancel asked of whoever runs it", R"sql(
ALTER TABLE runs ADD COLUMN labels TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN changed_paths TEXT;
ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
)sql"},
      {14, "remote workers: a run's project (project worker pools), and workspace uploads in the store", R"sql(
ALTER TABLE runs ADD COLUMN project TEXT NOT NULL DEFAULT '';
CREATE TABLE run_uploads (
  run_id BIGINT NOT NULL REFERENCES runs(id),
  attempt INTEGER NOT NULL,
  byte_offset BIGINT NOT NULL,
  data @BLOB@ NOT NULL,
  PRIMARY KEY (run_id, attempt, byte_offset)
);
)sql"},
  };
  return kMigrations;
}

std::string MigrationSql(const Migration& m, Dialect dialect) {
  const bool pg = dialect == Dialect::kPostgres;
  const std::pair<std::string_view, std::string_view> tokens[] = {
      {"@ID@", pg ? "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
                  : "INTEGER PRIMARY KEY AUTOINCREMENT"},
      {"@BLOB@", pg ? "BYTEA" : "BLOB"},
  };
  std::string sql(m.sql);
  sql += pg ? m.postgres_only : m.sqlite_only;
  for (const auto& [token, replacement] : tokens) {
    for (size_t at = sql.find(token); at != std::string::npos;
         at = sql.find(token, at + replacement.size())) {
      sql.replace(at, token.size(), replacement);
    }
  }
  return sql;
}

}  // namespace gantry::store::internal
