-- StepResults.insert/7: ON CONFLICT DO NOTHING on the partial unique index, as Ecto's
-- conflict_target: the partial index "(instance_id, step_ref) WHERE NOT processed".
INSERT INTO {heph}.hephaestus_step_results
  (instance_id, step_ref, event, context_updates, metadata_updates, workflow_version, inserted_at)
VALUES (%(id)s, %(step_ref)s, %(event)s, %(context)s::jsonb, %(metadata)s::jsonb,
        %(workflow_version)s, timezone('UTC', now()))
ON CONFLICT (instance_id, step_ref) WHERE NOT processed DO NOTHING
RETURNING id
