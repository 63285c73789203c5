SELECT event FROM {heph}.hephaestus_step_results
WHERE instance_id = %(id)s AND step_ref = %(step_ref)s AND NOT processed
