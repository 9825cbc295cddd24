"""The ``synthpacs`` command: parse options, load configuration, build, run.

Kept thin (datasette): every command builds a :class:`Config`, then calls
the archive. A user's mistake is one sentence and a non-zero exit, never a
traceback; configuration errors exit with status 2.
"""

from __future__ import annotations

import functools
import io
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

    @click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        help="YAML configuration file (default: config/default.yaml if present).",
    )
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
    figures = archive.figures()
    rows = [("seed", config.seed), ("data directory", config.data_dir)]
    rows += [(name.replace("_", " "), f"{value:,}") for name, value in figures.items()]
    targets = archive.targets
    for cohort in archive.cohorts:
        modalities = ", ".join(targets[cohort.target].modalities)
        rows.append((f"cohort {cohort.name}", f"{cohort.title} ({cohort.target}: {modalities})"))
        for exam in cohort.exams[1:]:
            visits = ", ".join(str(v) for v in exam.visits or ())
            rows.append(
                (
                    "",
                    f"+ {exam.study_description} ({exam.target}: {', '.join(targets[exam.target].modalities)}) at visits {visits}",
                )
            )
    if archive.catalog_build_seconds:
        rows.append(("catalog build", f"{archive.catalog_build_seconds:.2f} s"))
    click.echo(tabulate(rows, tablefmt="plain"))


QUERY_COLUMNS = {
    "PATIENT": [
        "PatientID",
        "PatientName",
        "PatientSex",
        "PatientBirthDate",
        "ClinicalTrialSubjectID",
        "NumberOfPatientRelatedStudies",
    ],
    "STUDY": [
        "PatientID",
        "PatientName",
        "StudyDate",
        "ClinicalTrialTimePointID",
        "AccessionNumber",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedInstances",
        "StudyInstanceUID",
    ],
    "SERIES": ["Modality", "SeriesNumber", "SeriesDescription", "NumberOfSeriesRelatedInstances", "SeriesInstanceUID"],
    "IMAGE": ["InstanceNumber", "SOPClassUID", "SOPInstanceUID"],
}


@cli.command()
@click.option(
    "--level",
    type=click.Choice(["PATIENT", "STUDY", "SERIES", "IMAGE"], case_sensitive=False),
    default="STUDY",
    show_default=True,
)
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


def generator_options(func):
    """--renderer, --weights, --device and --psi: the generator settings as flags."""
    func = click.option("--psi", "truncation_psi", help="GAN truncation psi in 0..1 (1: full diversity, 0: the mean sample).")(
        func
    )
    func = click.option("--device", help="Where generators run: auto (CUDA when present), cpu, cuda or cuda:N.")(func)
    func = click.option(
        "--weights",
        help="Pretrained weights (a folder or file, as the target's model card says; a `synthpacs train` run folder) "
        "to use instead of the shipped GAN weights.",
    )(func)
    func = click.option("--renderer", help="gan (default) or teacher: the photorealism stage.")(func)
    return func


@cli.command()
@click.option("--study", "study_uid", help="Study Instance UID to generate.")
@click.option(
    "--target",
    "target_name",
    help="Instead of --study: generate -n studies of this target (name or alias), in catalog order from --start-id.",
)
@click.option(
    "-n", "count", type=click.IntRange(min=1, max=100_000), default=1, show_default=True, help="With --target: studies."
)
@click.option(
    "--start-id",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="With --target: the first study's number (files are numbered from it).",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(),
    help="Output folder (with --interpolate: a folder of PNG frames, or a .gif file).",
)
@click.option("--no-jpeg", is_flag=True, help="Write only the DICOM files.")
@click.option(
    "--interpolate",
    metavar="SEED_A,SEED_B",
    help="Instead of DICOM, write frames that walk the GAN's latent space from sample SEED_A to sample SEED_B on the study's label map.",
)
@click.option(
    "--frames",
    type=click.IntRange(min=2, max=1000),
    default=16,
    show_default=True,
    help="With --interpolate: frames from A to B, both included.",
)
@click.option(
    "--slice",
    "slice_choice",
    default="lesion",
    show_default=True,
    help="With --interpolate: axial slice index, 'middle', or 'lesion' (the largest lesion's measured slice).",
)
@click.option(
    "--plane",
    type=click.Choice(["axial", "coronal"]),
    default="axial",
    show_default=True,
    help="With --interpolate: the plane shown (coronal renders the whole series per frame).",
)
@click.option(
    "--window",
    "display_window",
    default=None,
    help="With --interpolate: display window of the frames, one the target names (lung CT: lung, mediastinum); "
    "default: the target's first.",
)
@click.option(
    "--fps",
    type=click.FloatRange(min=0.5, max=50),
    default=8.0,
    show_default=True,
    help="With --interpolate and a .gif: frames per second.",
)
@generator_options
@common_options
def generate(
    config,
    study_uid,
    target_name,
    count,
    start_id,
    out_dir,
    no_jpeg,
    interpolate,
    frames,
    slice_choice,
    plane,
    display_window,
    fps,
):
    """Write a study's Part 10 files and one JPEG rendition per image.

    With --target T -n N: the same for N studies of target T (numbered from
    --start-id, one folder each), plus the target's own files and a
    measurements.csv where it has them (see the target's model card).

    With --interpolate A,B: write the GAN's latent interpolation between the
    samples drawn from seeds A and B, on this study's label map (frame 0 is
    sample A, the last frame sample B), as PNG frames or an animated GIF.
    """
    if bool(study_uid) == bool(target_name):
        raise click.UsageError("give either --study UID or --target NAME")
    if target_name:
        archive = _archive(config)
        uids = archive.studies_of_target(target_name, start_id, 1 if interpolate else count)
        if not uids:
            raise click.ClickException(f"the universe has no performed study of {target_name} from number {start_id}")
        if not interpolate:
            _generate_studies(archive, target_name, uids, start_id, Path(out_dir), no_jpeg)
            return
        study_uid = uids[0]
    if interpolate:
        from .generation.interpolate import write_interpolation

        written = write_interpolation(
            config, study_uid, Path(out_dir), interpolate, frames, slice_choice, plane, display_window, fps
        )
        click.echo(f"wrote {written}")
        return
    archive = _archive(config)
    written = len(_write_study(archive, study_uid, Path(out_dir), no_jpeg))
    click.echo(f"wrote {written} instances of study {study_uid} to {out_dir}")


def _write_study(archive, study_uid: str, out: Path, no_jpeg: bool, progress: bool = True) -> list:
    """A study's Part 10 files (and JPEG renditions) under ``out/<series UID>/``; returns the datasets."""
    from pydicom import dcmread
    from tqdm import tqdm

    refs = archive.instances(study_uid)
    datasets = []
    for ref in tqdm(refs, desc="instances", unit="inst", file=sys.stderr, disable=not progress):
        series_dir = out / ref.series_instance_uid
        series_dir.mkdir(parents=True, exist_ok=True)
        name = f"{ref.instance_number or 0:04d}_{ref.sop_instance_uid}"
        blob = archive.instance_bytes(ref)
        (series_dir / f"{name}.dcm").write_bytes(blob)
        ds = dcmread(io.BytesIO(blob))
        if not no_jpeg:
            from .imaging.render import encode_image, render_frame

            (series_dir / f"{name}.jpg").write_bytes(encode_image(render_frame(ds), "image/jpeg"))
        datasets.append(ds)
    return datasets


def _generate_studies(archive, target_name: str, uids: list[str], start_id: int, out: Path, no_jpeg: bool) -> None:
    """``generate --target``: each study in ``out/<number>/``, the target's own files, measurements.csv."""
    import csv

    from tqdm import tqdm

    target = registry_entry(archive, target_name)
    rows = []
    out.mkdir(parents=True, exist_ok=True)
    for number, uid in enumerate(tqdm(uids, desc=target.name, unit="study", file=sys.stderr), start=start_id):
        datasets = _write_study(archive, uid, out / f"{number:06d}", no_jpeg, progress=False)
        if target.export is not None:
            row = dict(target.export.write(datasets, out, number))
            if row:
                rows.append(row)
    if rows:
        columns = list(dict.fromkeys(key for row in rows for key in row))
        with open(out / "measurements.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    extra = f" and measurements.csv ({len(rows)} rows)" if rows else ""
    click.echo(f"wrote {len(uids)} {target.name} studies (numbers {start_id}-{start_id + len(uids) - 1}) to {out}{extra}")


def registry_entry(archive, name: str):
    from .generation.registry import zoo_entry

    return zoo_entry(name, archive.targets)


@cli.command()
@click.argument("target")
@click.option(
    "--volumes", type=click.IntRange(min=2), default=8, show_default=True, help="Label volumes per set (two sets: X and Y)."
)
@click.option(
    "--rows",
    type=click.Choice(["128", "256", "512"]),
    default="256",
    show_default=True,
    help="Grid size of the evaluation volumes.",
)
@click.option(
    "--thickness",
    type=click.FloatRange(min=0.5, max=20),
    default=5.0,
    show_default=True,
    help="Slice spacing of the evaluation volumes (mm).",
)
@click.option(
    "--samples",
    type=click.IntRange(min=2),
    help="Samples per set, for targets that draw no volumes (the target's default when not given).",
)
@click.option("--eval-seed", type=int, default=0, show_default=True, help="Seed of the evaluation sets (never used in training).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the full report as JSON.")
@click.option("--update-card", is_flag=True, help="Rewrite the evaluation block of the target's MODEL_CARD.md.")
@click.option(
    "--montage",
    type=click.Path(dir_okay=False),
    help="Also write a teacher | GAN comparison picture (axial and coronal) of one study.",
)
@generator_options
@common_options
def evaluate(config, target, volumes, rows, thickness, samples, eval_seed, json_out, update_card, montage):
    """Measure a target's GAN against its teacher (synthpacs evaluate lung-ct).

    Fréchet distance on the shipped filter bank next to the teacher-vs-teacher
    floor, intra-set and conditional diversity, HU by label, tumour contrast
    inside the SEG, slice-to-slice banding.
    """
    from .generation.evaluate import EvaluationRequest
    from .generation.registry import discover, zoo_entry

    entry = zoo_entry(target, discover(config.generator_paths))
    weights = config.weights.get(entry.name, "") if isinstance(config.weights, dict) else config.weights
    request = EvaluationRequest(
        target=entry.name,
        weights=Path(weights) if weights else None,
        volumes=volumes,
        rows=int(rows),
        slice_spacing_mm=thickness,
        seed=eval_seed,
        device=config.device,
        device_source=config.sources.get("device", "default"),
        psi=config.truncation_psi,
        out=Path(json_out) if json_out else None,
        card=entry.model_card if update_card else None,
        montage=Path(montage) if montage else None,
        weights_source=config.sources.get("weights", "default"),
        extra={"data_dir": str(config.data_dir), **({"samples": samples} if samples else {})},
    )
    if entry.evaluation is None:
        raise click.ClickException(f"{entry.name} offers no evaluation")
    report = entry.evaluation.evaluate(request)
    headers = list(getattr(entry.evaluation, "summary_headers", ("quantity", "GAN", "teacher")))
    click.echo(tabulate(entry.evaluation.summary_rows(report), headers=headers, tablefmt="simple"))
    if update_card:
        click.echo(f"updated {entry.model_card}")


@cli.command()
@click.option("--host", help="Address to bind (default 127.0.0.1: this machine only; 0.0.0.0 for the network).")
@click.option("--http-port", help="DICOMweb / HTTP port (default 8080).")
@click.option("--dicom-port", help="DIMSE port (default 11112).")
@click.option("--ae-title", help="The server's AE title (default SYNTHPACS).")
@click.option(
    "--peer",
    "peers",
    multiple=True,
    callback=lambda ctx, param, value: list(value) or None,
    help="C-MOVE destination AET=HOST:PORT (repeatable).",
)
@generator_options
@common_options
def serve(config):
    """Serve the archive: DICOMweb and /healthz over HTTP, and DIMSE.

    DIMSE (AE SYNTHPACS, port 11112 by default): C-ECHO; Patient and Study
    Root C-FIND, C-MOVE (to --peer destinations) and C-GET; C-STORE; and
    Modality Worklist. See docs/dimse.md.
    """
    from .server import run_forever

    run_forever(config)


@cli.command()
@click.argument("target")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Run folder (default: runs/<target>-seed<SEED>). It ends up a pretrained folder: --weights OUT serves it.",
)
@click.option("--steps", type=click.IntRange(min=0), default=3000, show_default=True, help="Optimisation steps.")
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True, help="Crops per step.")
@click.option("--crop", type=click.IntRange(min=16), default=96, show_default=True, help="Crop size in pixels (a multiple of 8).")
@click.option(
    "--data",
    "train_data",
    type=click.Path(file_okay=False),
    help="Train on the user's pairs (*.npz with 'image' HU and 'labels'; see the model card) instead of the teacher.",
)
@click.option("--device", help="auto (CUDA when present), cpu, cuda or cuda:N.")
@click.option(
    "--minutes", type=click.FloatRange(min=0.0, min_open=True), help="Stop after this much wall time (steps done are recorded)."
)
@click.option(
    "--sample-every",
    type=click.IntRange(min=1),
    default=250,
    show_default=True,
    help="Steps between sample montages (and quick metrics).",
)
@click.option(
    "--checkpoint-every", type=click.IntRange(min=1), default=1000, show_default=True, help="Steps between checkpoints."
)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for torch (default: torch's choice).")
@click.option(
    "--init",
    "init_dir",
    type=click.Path(file_okay=False),
    help="Fine-tune from these weights (a pretrained folder) instead of starting afresh.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a hyperparameter of the target's trainer (JSON value), e.g. --set lr_g=1e-4.",
)
@common_options
def train(
    config, target, out_dir, steps, batch, crop, train_data, minutes, sample_every, checkpoint_every, threads, init_dir, overrides
):
    """Train a target's GAN (synthpacs train lung-ct --seed 1).

    --seed seeds the run (data, initialisation, latents): the same seed,
    steps and thread count give the same weights. Writes a progress bar,
    sample montages, checkpoints and a run record (training_options.json,
    stats.jsonl, metrics.jsonl) to --out.
    """
    import json

    from .generation.registry import zoo_entry
    from .generation.train import TrainingRequest

    entry = zoo_entry(target)
    if crop % 8:
        raise click.BadParameter(f"{crop} is not a multiple of 8", param_hint="--crop")
    extra = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--set")
        try:
            extra[key] = json.loads(value)
        except json.JSONDecodeError:
            extra[key] = value
    request = TrainingRequest(
        target=entry.name,
        out=Path(out_dir or f"runs/{entry.name.split('/')[-1]}-seed{config.seed}"),
        steps=steps,
        seed=config.seed,
        batch=batch,
        crop=crop,
        data=Path(train_data) if train_data else None,
        device=config.device,
        device_source=config.sources.get("device", "default"),
        minutes=minutes,
        sample_every=sample_every,
        checkpoint_every=checkpoint_every,
        threads=threads,
        init=Path(init_dir) if init_dir else None,
        extra=extra,
    )
    if entry.training is None:
        raise click.ClickException(f"{entry.name} offers no training")
    out = entry.training.train(request)
    click.echo(f"weights and run record in {out} (serve them with --weights {out})")


def main() -> None:
    cli()
