"""The ``synthpacs`` command: parse options, load configuration, build, run.

Kept thin (datasette): every command builds a :class:`Config`, then calls
the archive. A user's mistake is one sentence and a non-zero exit, never a
traceback; configuration errors exit with status 2.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import click
from tabulate import tabulate

from . import __version__
from .config import SETTINGS_BY_NAME, load_config
from .errors import ConfigError, SynthPACSError


class ConfigProblem(click.ClickException):
    exit_code = 2


def common_options(func):
    """--config, --data-dir, --seed and --patients, the same on every command.

    Any other option of the command named after a setting (``--http-port``
    for ``http_port``...) is passed as a flag too, at the top of the
    precedence order.
    """

    @click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML configuration file (default: config/default.yaml if present).")
    @click.option("--data-dir", help="Folder for the catalog, the cache and stored objects.")
    @click.option("--seed", help="Seed of the synthetic universe.")
    @click.option("--patients", help="Number of patients in the universe.")
    @functools.wraps(func)
    def wrapper(config_file, **kwargs):
        flags = {name: kwargs.pop(name) for name in list(kwargs) if name in SETTINGS_BY_NAME}
        try:
            config = load_config(config_file, flags)
        except ConfigError as exc:
            raise ConfigProblem(str(exc)) from None
        logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            return func(config, **kwargs)
        except ConfigError as exc:
            raise ConfigProblem(str(exc)) from None
        except SynthPACSError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def _archive(config):
    from .archive import Archive

    return Archive(config)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="synthpacs")
def cli():
    """SynthPACS: a PACS that holds no patients.

    Every study is fabricated on demand from a deterministic synthetic
    universe and served over DIMSE and DICOMweb.
    """


@cli.command()
@common_options
def info(config):
    """The universe in figures."""
    archive = _archive(config)
    figures = archive.catalog.figures()
    rows = [("seed", config.seed), ("data directory", config.data_dir)]
    rows += [(name.replace("_", " "), f"{value:,}") for name, value in figures.items()]
    for cohort in archive.universe.cohorts:
        rows.append((f"cohort {cohort.name}", f"{cohort.title} ({cohort.target}, {cohort.modality})"))
    if archive.catalog.build_seconds:
        rows.append(("catalog build", f"{archive.catalog.build_seconds:.2f} s"))
    click.echo(tabulate(rows, tablefmt="plain"))


QUERY_COLUMNS = {
    "PATIENT": ["PatientID", "PatientName", "PatientSex", "PatientBirthDate", "ClinicalTrialSubjectID", "NumberOfPatientRelatedStudies"],
    "STUDY": ["PatientID", "PatientName", "StudyDate", "ClinicalTrialTimePointID", "AccessionNumber", "ModalitiesInStudy",
              "NumberOfStudyRelatedInstances", "StudyInstanceUID"],
    "SERIES": ["Modality", "SeriesNumber", "SeriesDescription", "NumberOfSeriesRelatedInstances", "SeriesInstanceUID"],
    "IMAGE": ["InstanceNumber", "SOPClassUID", "SOPInstanceUID"],
}


@cli.command()
@click.option("--level", type=click.Choice(["PATIENT", "STUDY", "SERIES", "IMAGE"], case_sensitive=False), default="STUDY", show_default=True)
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True, help="At most this many rows (0: all).")
@click.option("--offset", type=click.IntRange(min=0), default=0)
@click.option("--fuzzy", is_flag=True, help="Case-insensitive person-name matching.")
@click.argument("keys", nargs=-1)
@common_options
def query(config, level, limit, offset, fuzzy, keys):
    """Match the catalog with findscu-style KEY=VALUE keys.

    Examples: PatientName=PH*   StudyDate=20250101-   StudyInstanceUID=UID1\\UID2
    """
    from .archive.catalog import element_text, vr_of

    level = level.upper()
    parsed = {}
    for item in keys:
        keyword, sep, value = item.partition("=")
        if not sep or not keyword:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE (e.g. PatientName=PH*)", param_hint="KEYS")
        try:
            vr_of(keyword)
        except SynthPACSError as exc:
            raise click.BadParameter(str(exc), param_hint="KEYS") from None
        parsed[keyword] = value
    archive = _archive(config)
    columns = QUERY_COLUMNS[level]
    rows = []
    for ds in archive.find(level, parsed, fuzzy=fuzzy, limit=limit or None, offset=offset):
        rows.append([element_text(ds, c) or "" for c in columns])
    click.echo(tabulate(rows, headers=columns, tablefmt="simple"))
    click.echo(f"{len(rows)} match{'es' if len(rows) != 1 else ''}")


@cli.command()
@click.option("--study", "study_uid", required=True, help="Study Instance UID to generate.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--no-jpeg", is_flag=True, help="Write only the DICOM files.")
@common_options
def generate(config, study_uid, out_dir, no_jpeg):
    """Write a study's Part 10 files and one JPEG rendition per image."""
    from tqdm import tqdm

    archive = _archive(config)
    refs = archive.instances(study_uid)
    out = Path(out_dir)
    written = 0
    for ref in tqdm(refs, desc="instances", unit="inst", file=sys.stderr):
        series_dir = out / ref.series_instance_uid
        series_dir.mkdir(parents=True, exist_ok=True)
        name = f"{ref.instance_number or 0:04d}_{ref.sop_instance_uid}"
        blob = archive.instance_bytes(ref)
        (series_dir / f"{name}.dcm").write_bytes(blob)
        if not no_jpeg:
            from .imaging.render import encode_image, render_frame

            ds = archive.instance_dataset(ref)
            (series_dir / f"{name}.jpg").write_bytes(encode_image(render_frame(ds), "image/jpeg"))
        written += 1
    click.echo(f"wrote {written} instances of study {study_uid} to {out}")


@cli.command()
@click.option("--host", help="Address to bind (default 127.0.0.1: this machine only; 0.0.0.0 for the network).")
@click.option("--http-port", help="DICOMweb / HTTP port (default 8080).")
@click.option("--dicom-port", help="DIMSE port (default 11112).")
@click.option("--ae-title", help="The server's AE title (default SYNTHPACS).")
@click.option("--peer", "peers", multiple=True, callback=lambda ctx, param, value: list(value) or None,
              help="C-MOVE destination AET=HOST:PORT (repeatable).")
@common_options
def serve(config):
    """Serve the archive: DICOMweb and /healthz over HTTP."""
    from .server import run_forever

    run_forever(config)


def main() -> None:
    cli()
