-- etl_jobs status machine: legal moves set attempts and timestamps, illegal
-- ones are refused, retries stop at max_attempts.
\set ON_ERROR_STOP on
BEGIN;

INSERT INTO organizations (id, name, slug)
VALUES ('14000000-0000-4000-8000-000000000001', 'ETL', 'etl-test');
INSERT INTO etl_jobs (org_id, id, job_type, max_attempts)
VALUES ('14000000-0000-4000-8000-000000000001', '54000000-0000-4000-8000-000000000001',
        'dsp_import', 2);

DO $$
DECLARE
    v_job etl_jobs%ROWTYPE;
    v_refused boolean := false;
    c_id constant uuid := '54000000-0000-4000-8000-000000000001';
BEGIN
    BEGIN
        UPDATE etl_jobs SET status = 'succeeded' WHERE id = c_id;
    EXCEPTION WHEN check_violation THEN v_refused := true;
    END;
    ASSERT v_refused, 'pending -> succeeded was allowed';

    UPDATE etl_jobs SET status = 'running' WHERE id = c_id RETURNING * INTO v_job;
    ASSERT v_job.attempts = 1 AND v_job.started_at IS NOT NULL, 'running did not count an attempt';
    UPDATE etl_jobs SET status = 'failed', error = 'DSP timeout' WHERE id = c_id RETURNING * INTO v_job;
    ASSERT v_job.finished_at IS NOT NULL AND v_job.error = 'DSP timeout', 'failure not recorded';
    UPDATE etl_jobs SET status = 'pending' WHERE id = c_id;
    UPDATE etl_jobs SET status = 'running' WHERE id = c_id RETURNING * INTO v_job;
    ASSERT v_job.attempts = 2 AND v_job.error IS NULL, 'retry did not reset the error';
    UPDATE etl_jobs SET status = 'failed' WHERE id = c_id;

    v_refused := false;
    BEGIN
        UPDATE etl_jobs SET status = 'pending' WHERE id = c_id;
    EXCEPTION WHEN check_violation THEN v_refused := true;
    END;
    ASSERT v_refused, 'a job was retried beyond max_attempts';

    UPDATE etl_jobs SET status = 'pending', max_attempts = 3 WHERE id = c_id;
    UPDATE etl_jobs SET status = 'running' WHERE id = c_id;
    UPDATE etl_jobs SET status = 'succeeded', rows_processed = 42 WHERE id = c_id RETURNING * INTO v_job;
    ASSERT v_job.finished_at >= v_job.started_at, 'finished before started';

    v_refused := false;
    BEGIN
        UPDATE etl_jobs SET status = 'running' WHERE id = c_id;
    EXCEPTION WHEN check_violation THEN v_refused := true;
    END;
    ASSERT v_refused, 'a succeeded job was restarted';
END
$$;

ROLLBACK;
