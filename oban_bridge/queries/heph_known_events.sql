-- Events a step has already produced that Elixir's AdvanceWorker applied (loading them with
-- String.to_existing_atom): atoms of that step's events/0. An unprocessed row proves nothing.
SELECT DISTINCT event FROM {heph}.hephaestus_step_results
WHERE step_ref = %(step_ref)s AND event <> '__async__' AND processed
