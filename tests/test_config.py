"""sources.yaml and pipeline YAML: what loads, and the messages a user gets when something is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from curate.errors import ConfigError
from curate.parse.stages import HtmlStage, PdfStage
from curate.pipeline import load_pipeline
from curate.sources.registry import find_sources_file, load_sources
from curate.stage import require_source
from curate.steps import STEPS

from .conftest import GAP_SOURCES, REPO


def test_registry_declares_every_gap_source():
    sources = load_sources(REPO / "sources.yaml")
    assert set(sources) >= set(GAP_SOURCES)
    assert sources["nice"].redistributable and not sources["mayo"].redistributable
    assert sources["who"].content == "pdf" and sources["wikidoc"].content == "html"
    assert sources["demo-guidelines"].priority < sources["demo-wiki"].priority


def test_malformed_yaml_names_file_and_line(tmp_path: Path):
    bad = tmp_path / "sources.yaml"
    bad.write_text("sources:\n  nice:\n    title: [unclosed\n    content: html\n")
    with pytest.raises(ConfigError, match=r"sources\.yaml:\d+:\d+: invalid YAML"):
        load_sources(bad)


def test_yaml_python_tags_are_refused(tmp_path: Path):
    evil = tmp_path / "sources.yaml"
    evil.write_text("sources: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_sources(evil)


def test_bad_source_settings_say_what_is_expected(tmp_path: Path):
    path = tmp_path / "sources.yaml"
    path.write_text("sources:\n  x:\n    content: video\n    redistributable: true\n")
    with pytest.raises(ConfigError, match="'content' must be one of html, pdf"):
        load_sources(path)
    path.write_text("sources:\n  x:\n    content: html\n    redistributable: maybe\n")
    with pytest.raises(ConfigError, match="'redistributable' must be true or false"):
        load_sources(path)


def test_unknown_source_lists_the_known_ones():
    sources = load_sources(REPO / "sources.yaml")
    with pytest.raises(ConfigError, match="unknown source 'nicee'.*known sources: .*nice"):
        require_source(sources, "nicee")


def test_sources_file_found_upwards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CURATE_SOURCES", raising=False)
    (tmp_path / "sources.yaml").write_text("sources: {}\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_sources_file(deep) == tmp_path / "sources.yaml"


def test_demo_pipeline_loads_with_inputs_resolved():
    pipeline, _ = load_pipeline(REPO / "pipelines" / "demo.yaml")
    names = [p.stage.name for p in pipeline.stages]
    assert names == [
        *("guidelines", "papers", "scraped", "language", "clean", "quality", "dedup", "near_dedup"),
        *("decontaminate", "shard"),
    ]
    html, pdf, scraped = pipeline.stages[0], pipeline.stages[1], pipeline.stages[2]
    assert isinstance(html.stage, HtmlStage) and isinstance(pdf.stage, PdfStage)
    assert {i.source for i in html.inputs} == {"demo-guidelines", "demo-wiki"}
    assert html.stage.licenses["demo-wiki"].startswith("CC0")
    # The scrape stage's inputs are local copies of the sites, resolved relative to the YAML file.
    assert {i.source: Path(i.path).relative_to(REPO).as_posix() for i in scraped.inputs} == {
        "nice": "tests/fixtures/sites/nice/site",
        "who": "tests/fixtures/sites/who/site",
    }
    assert [i.path for i in pipeline.stages[3].inputs] == ["@guidelines", "@papers", "@scraped"]
    assert pipeline.stages[4].inputs[0].path == "@language"  # default: the stage before
    by_name = {p.stage.name: p.stage for p in pipeline.stages}
    for dedup in ("dedup", "near_dedup"):  # survivors by source priority, from sources.yaml
        assert by_name[dedup].priority["demo-guidelines"] == 10


def _pipeline(tmp_path: Path, body: str) -> Path:
    (tmp_path / "sources.yaml").write_text((REPO / "sources.yaml").read_text())
    path = tmp_path / "p.yaml"
    path.write_text(body)
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "stages:\n  - step: teleport\n",
            "unknown step 'teleport'; steps are: " + ", ".join(sorted(STEPS)),
        ),
        (
            "stages:\n  - step: html\n    inputs: [x]\n    colour: red\n",
            "unknown option.*colour.*it takes: source",
        ),
        ("stages:\n  - step: filter\n", "is first, so it needs 'inputs:'"),
        (
            "stages:\n  - step: html\n    inputs: [x]\n  - step: html\n    inputs: [y]\n",
            "two stages are named",
        ),
        ("stages:\n  - step: html\n    source: nowhere\n    inputs: [x]\n", "unknown source 'nowhere'"),
        ("stages: []\n", "non-empty 'stages:' list"),
        ("stages:\n  - step: shard\n    inputs: [x]\n    target_size: huge\n", "not a size: 'huge'"),
    ],
)
def test_pipeline_errors_say_what_to_fix(tmp_path: Path, body: str, message: str):
    with pytest.raises(ConfigError, match=message):
        load_pipeline(_pipeline(tmp_path, body))
