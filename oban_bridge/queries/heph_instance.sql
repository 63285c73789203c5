-- A hephaestus_ecto instance row (priv/repo/migrations via HephaestusEcto.Migration, version 3).
SELECT id, workflow, status, state, workflow_version
FROM {heph}.workflow_instances WHERE id = %(id)s
