"""DDL of StreamHouse's metadata store, for building test and demo databases.

``SQLITE_SCHEMA`` is the *effective* SQLite shape after StreamHouse's migrations 001-018
(including two quirks a reader must live with: the SQLite-only
``UNIQUE (group_id, topic, partition_id)`` on ``consumer_offsets`` that lets one organization
overwrite another's commit, and no foreign key from ``segments`` to ``partitions``).
``POSTGRES_SCHEMA`` follows the consolidated PostgreSQL migrations ``001_schema.sql`` +
``002_remove_default_org.sql``: UUID organization ids, JSONB config, the global (not
org-scoped) unique index on ``segments (topic, partition_id, base_offset)``, cascading foreign
keys, and row-level security policies keyed on ``app.current_organization_id`` that are not
forced, so the owning role bypasses them and any other role must set the organization.

Only the tables a reader touches and the transaction tables are created; StreamHouse's
API-key, quota, usage and schema-registry tables are irrelevant to reading and left out.
"""

from __future__ import annotations

__all__ = ["NIL_ORGANIZATION", "POSTGRES_RLS_TABLES", "POSTGRES_SCHEMA", "SQLITE_SCHEMA"]

#: The default organization StreamHouse seeded and later deleted (migrations 018 / 002).
NIL_ORGANIZATION = "00000000-0000-0000-0000-000000000000"

_NOW_MS_SQLITE = "(CAST(strftime('%s','now') AS INTEGER) * 1000)"

SQLITE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS organizations (
    id TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2)))
        || '-4' || substr(lower(hex(randomblob(2))), 2) || '-a' || substr(lower(hex(randomblob(2))), 2)
        || '-' || lower(hex(randomblob(6)))),
    name TEXT NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    plan TEXT NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'pro', 'enterprise')),
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted')),
    created_at INTEGER NOT NULL DEFAULT {_NOW_MS_SQLITE},
    updated_at INTEGER NOT NULL DEFAULT {_NOW_MS_SQLITE},
    settings TEXT NOT NULL DEFAULT '{{}}',
    external_id TEXT,
    deployment_mode TEXT NOT NULL DEFAULT 'self_hosted'
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_organizations_external_id ON organizations(external_id);

CREATE TABLE IF NOT EXISTS topics (
    organization_id TEXT NOT NULL DEFAULT '{NIL_ORGANIZATION}'
        REFERENCES organizations(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    partition_count INTEGER NOT NULL CHECK (partition_count > 0),
    retention_ms INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    config TEXT NOT NULL DEFAULT '{{}}',
    cleanup_policy TEXT NOT NULL DEFAULT 'delete',
    PRIMARY KEY (organization_id, name)
);
CREATE INDEX IF NOT EXISTS idx_topics_organization ON topics(organization_id);

CREATE TABLE IF NOT EXISTS partitions (
    organization_id TEXT NOT NULL DEFAULT '{NIL_ORGANIZATION}',
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    high_watermark INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (organization_id, topic, partition_id),
    FOREIGN KEY (organization_id, topic) REFERENCES topics(organization_id, name) ON DELETE CASCADE
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_partitions_topic_partition
    ON partitions(organization_id, topic, partition_id);

CREATE TABLE IF NOT EXISTS segments (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL DEFAULT '{NIL_ORGANIZATION}'
        REFERENCES organizations(id) ON DELETE CASCADE,
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    base_offset INTEGER NOT NULL,
    end_offset INTEGER NOT NULL,
    record_count INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    s3_bucket TEXT NOT NULL,
    s3_key TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    min_timestamp INTEGER NOT NULL DEFAULT 0,
    max_timestamp INTEGER NOT NULL DEFAULT 0,
    CHECK (end_offset >= base_offset)
);
CREATE INDEX IF NOT EXISTS idx_segments_org_location
    ON segments(organization_id, topic, partition_id, base_offset);
CREATE INDEX IF NOT EXISTS idx_segments_org_offsets
    ON segments(organization_id, topic, partition_id, base_offset, end_offset);
CREATE INDEX IF NOT EXISTS idx_segments_s3 ON segments(s3_bucket, s3_key);
CREATE INDEX IF NOT EXISTS idx_segments_organization ON segments(organization_id);

CREATE TABLE IF NOT EXISTS consumer_groups (
    organization_id TEXT NOT NULL DEFAULT '{NIL_ORGANIZATION}'
        REFERENCES organizations(id) ON DELETE CASCADE,
    group_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (organization_id, group_id)
);

CREATE TABLE IF NOT EXISTS consumer_offsets (
    organization_id TEXT NOT NULL DEFAULT '{NIL_ORGANIZATION}',
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    committed_offset INTEGER NOT NULL,
    metadata TEXT,
    committed_at INTEGER NOT NULL,
    PRIMARY KEY (organization_id, group_id, topic, partition_id),
    UNIQUE (group_id, topic, partition_id),
    FOREIGN KEY (organization_id, group_id)
        REFERENCES consumer_groups(organization_id, group_id) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS partition_lso (
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    last_stable_offset INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (topic, partition_id)
);

CREATE TABLE IF NOT EXISTS transactions (
    transaction_id TEXT PRIMARY KEY NOT NULL,
    producer_id INTEGER NOT NULL,
    producer_epoch INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN ('ongoing', 'preparing', 'committed', 'aborted')),
    timeout_ms INTEGER NOT NULL DEFAULT 60000,
    started_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    completed_at INTEGER,
    organization_id TEXT
);

CREATE TABLE IF NOT EXISTS transaction_partitions (
    transaction_id TEXT NOT NULL REFERENCES transactions(transaction_id) ON DELETE CASCADE,
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    first_offset INTEGER NOT NULL,
    last_offset INTEGER NOT NULL,
    PRIMARY KEY (transaction_id, topic, partition_id)
);

CREATE TABLE IF NOT EXISTS transaction_markers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    transaction_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    marker_type TEXT NOT NULL CHECK (marker_type IN ('commit', 'abort')),
    created_at INTEGER NOT NULL
);
"""

_NOW_MS_PG = "((extract(epoch FROM now()) * 1000)::bigint)"

#: Tables with the organization row-level-security policy (organizations uses ``id``).
POSTGRES_RLS_TABLES = (
    "organizations",
    "topics",
    "partitions",
    "segments",
    "consumer_groups",
    "consumer_offsets",
)

# The policy expression: the session's organization, or the nil UUID when unset. A missing or
# empty setting must not make every query fail, hence missing_ok and nullif.
_CURRENT_ORG = (
    "coalesce(nullif(current_setting('app.current_organization_id', true), '')::uuid, "
    f"'{NIL_ORGANIZATION}'::uuid)"
)

POSTGRES_SCHEMA = (
    f"""
CREATE TABLE IF NOT EXISTS organizations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL,
    slug VARCHAR(63) NOT NULL UNIQUE,
    plan VARCHAR(50) NOT NULL DEFAULT 'free',
    status VARCHAR(20) NOT NULL DEFAULT 'active',
    created_at BIGINT NOT NULL DEFAULT {_NOW_MS_PG},
    updated_at BIGINT NOT NULL DEFAULT {_NOW_MS_PG},
    settings JSONB NOT NULL DEFAULT '{{}}',
    external_id VARCHAR(255) UNIQUE,
    deployment_mode VARCHAR(20) NOT NULL DEFAULT 'self_hosted'
);

CREATE TABLE IF NOT EXISTS topics (
    organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    partition_count INTEGER NOT NULL CHECK (partition_count > 0),
    retention_ms BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    config JSONB NOT NULL DEFAULT '{{}}',
    cleanup_policy TEXT NOT NULL DEFAULT 'delete',
    PRIMARY KEY (organization_id, name)
);
CREATE INDEX IF NOT EXISTS idx_topics_organization ON topics(organization_id);

CREATE TABLE IF NOT EXISTS partitions (
    organization_id UUID NOT NULL,
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    high_watermark BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (organization_id, topic, partition_id),
    FOREIGN KEY (organization_id, topic) REFERENCES topics(organization_id, name) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS segments (
    id TEXT PRIMARY KEY,
    organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    base_offset BIGINT NOT NULL,
    end_offset BIGINT NOT NULL,
    record_count INTEGER NOT NULL,
    size_bytes BIGINT NOT NULL,
    s3_bucket TEXT NOT NULL,
    s3_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    min_timestamp BIGINT NOT NULL,
    max_timestamp BIGINT NOT NULL,
    CHECK (end_offset >= base_offset),
    FOREIGN KEY (organization_id, topic, partition_id)
        REFERENCES partitions(organization_id, topic, partition_id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_segments_location
    ON segments(topic, partition_id, base_offset);
CREATE INDEX IF NOT EXISTS idx_segments_offsets
    ON segments(topic, partition_id, base_offset, end_offset);
CREATE INDEX IF NOT EXISTS idx_segments_s3 ON segments(s3_bucket, s3_key);
CREATE INDEX IF NOT EXISTS idx_segments_created_at ON segments(created_at);
CREATE INDEX IF NOT EXISTS idx_segments_organization ON segments(organization_id);

CREATE TABLE IF NOT EXISTS consumer_groups (
    organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    group_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (organization_id, group_id)
);

CREATE TABLE IF NOT EXISTS consumer_offsets (
    organization_id UUID NOT NULL,
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    committed_offset BIGINT NOT NULL,
    metadata TEXT,
    committed_at BIGINT NOT NULL,
    PRIMARY KEY (organization_id, group_id, topic, partition_id),
    FOREIGN KEY (organization_id, group_id)
        REFERENCES consumer_groups(organization_id, group_id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, topic, partition_id)
        REFERENCES partitions(organization_id, topic, partition_id) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS partition_lso (
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    last_stable_offset BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (topic, partition_id)
);

CREATE TABLE IF NOT EXISTS transactions (
    transaction_id TEXT PRIMARY KEY,
    producer_id BIGINT NOT NULL,
    producer_epoch INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN ('ongoing', 'preparing', 'committed', 'aborted')),
    timeout_ms INTEGER NOT NULL DEFAULT 60000,
    started_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    completed_at BIGINT,
    organization_id UUID
);

CREATE TABLE IF NOT EXISTS transaction_partitions (
    transaction_id TEXT NOT NULL REFERENCES transactions(transaction_id) ON DELETE CASCADE,
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    first_offset BIGINT NOT NULL,
    last_offset BIGINT NOT NULL,
    PRIMARY KEY (transaction_id, topic, partition_id)
);

CREATE TABLE IF NOT EXISTS transaction_markers (
    id BIGSERIAL PRIMARY KEY,
    transaction_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    "offset" BIGINT NOT NULL,
    marker_type TEXT NOT NULL CHECK (marker_type IN ('commit', 'abort')),
    created_at BIGINT NOT NULL
);
"""
    + "\n".join(
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n"
        f"DROP POLICY IF EXISTS {table}_org_isolation ON {table};\n"
        f"CREATE POLICY {table}_org_isolation ON {table} "
        f"USING ({'id' if table == 'organizations' else 'organization_id'} = {_CURRENT_ORG});"
        for table in POSTGRES_RLS_TABLES
    )
    + "\n"
)
