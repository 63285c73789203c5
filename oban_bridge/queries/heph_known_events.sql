-- Events a step has already produced in any instance: Hephaestus stored them, so the Elixir app
-- knows them as atoms of that step's events/0.
SELECT DISTINCT event FROM {heph}.hephaestus_step_results
WHERE step_ref = %(step_ref)s AND event <> '__async__'
