"""Hephaestus' names: `Macro.underscore/1` of a module's last segment (JobMetadata.short_name)."""

from __future__ import annotations


def underscore(name: str) -> str:
    """Elixir's Macro.underscore for a module segment: "RenderPdf" -> "render_pdf",
    "HTTPClient" -> "http_client", "Step2Go" -> "step2_go"."""
    out: list[str] = []
    for i, ch in enumerate(name):
        if ch.isupper():
            prev = name[i - 1] if i else ""
            nxt = name[i + 1] if i + 1 < len(name) else ""
            if i and (prev.islower() or prev.isdigit() or (prev.isupper() and nxt.islower())):
                out.append("_")
            out.append(ch.lower())
        else:
            out.append(ch)
    return "".join(out)


def short_name(module: str) -> str:
    """`"Elixir.MyApp.Steps.RenderPdf"` -> `"render_pdf"`."""
    return underscore(module.rsplit(".", 1)[-1])


def module_ref(module: str) -> str:
    """Step and workflow refs carry the `Elixir.` prefix (`to_string(module)`)."""
    return module if module.startswith("Elixir.") else f"Elixir.{module}"
