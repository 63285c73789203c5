# The Elixir side of a Python step (paste into your app; adapt names).
#
# Hephaestus compiles a workflow only when every step it names is an Elixir module with events/0,
# and hephaestus_ecto loads context keys with String.to_existing_atom. So each Python step keeps a
# small Elixir stub that (1) declares the events and context keys Python may send back — which also
# makes those atoms exist in the VM — and (2) hands the work to Python: it enqueues a job for
# oban_bridge's step worker in a queue that only Python nodes run, and returns {:async}.
defmodule MyApp.Steps.RenderPdf do
  @behaviour Hephaestus.Steps.Step

  @impl true
  def events, do: [:rendered, :failed]

  # The context keys the Python step writes. Referencing them here creates the atoms.
  def context_keys, do: [:pdf_url, :pages]

  @impl true
  def execute(instance, _config, _context) do
    [meta: meta, tags: tags] =
      HephaestusOban.JobMetadata.build(instance.workflow, instance.id, step_ref: __MODULE__)

    %{
      "instance_id" => instance.id,
      "step_ref" => to_string(__MODULE__),
      "workflow" => to_string(instance.workflow),
      "workflow_version" => instance.workflow_version,
      # The config_key your HephaestusOban.Runner was started with.
      "config_key" => "Elixir.MyApp.Heph"
    }
    |> Oban.Job.new(
      worker: "oban_bridge.hephaestus.ExecuteStep",
      # No Elixir node runs this queue, so Elixir never tries to run the step itself.
      queue: "hephaestus_python",
      max_attempts: 5,
      meta: meta,
      tags: tags
    )
    |> Oban.insert!()

    {:async}
  end
end

# In the workflow, the step is used like any other:
#
#   defmodule MyApp.Workflows.BadgeFlow do
#     use Hephaestus.Workflow, unique: [key: "badges"], tags: ["badges"]
#     def start, do: MyApp.Steps.ValidateUser
#     def transit(MyApp.Steps.ValidateUser, :valid, _ctx), do: MyApp.Steps.RenderPdf
#     def transit(MyApp.Steps.RenderPdf, :rendered, _ctx), do: Hephaestus.Steps.Done
#     def transit(MyApp.Steps.RenderPdf, :failed, _ctx), do: Hephaestus.Steps.Done
#   end
