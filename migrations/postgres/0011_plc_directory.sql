-- The embedded PLC directory (projections/src/plc_operations.rs, inline): every did:plc
-- operation it accepted (stream plc/<did>, event plc.operation), in acceptance order per DID.
-- A pure function of the log.
CREATE TABLE plc_operations (
    did        TEXT    NOT NULL,
    -- the event's stream version: acceptance order within the DID
    seq        BIGINT NOT NULL,
    cid        TEXT    NOT NULL,
    -- DAG-CBOR of the signed operation, exactly as accepted
    operation  BYTEA    NOT NULL,
    -- 1 once a later recovery operation overrode it (kept for /log/audit)
    nullified  BIGINT NOT NULL,
    -- unix microseconds of acceptance
    created_at BIGINT NOT NULL,
    PRIMARY KEY (did, seq)
);
