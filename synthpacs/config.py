"""Settings: declared once, loaded in layers.

Precedence (DESIGN §6): built-in defaults < ``config/default.yaml`` (or the
file named by ``--config`` / ``SYNTHPACS_CONFIG``) < ``SYNTHPACS_*``
environment variables < command-line flags. Every value is validated on
load; an error names the key, the source that set it and the problem.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _defaults_dir() -> Path:
    """The project's ``config/`` folder: ``default.yaml`` and ``cohorts/``.

    A wheel ships it inside the package as ``synthpacs/defaults`` (setup.py maps
    config/ to the data package ``synthpacs.defaults``); a source checkout or an
    editable install reads it where it lives, at the top of the repository.
    """
    installed = Path(__file__).resolve().parent / "defaults"
    return installed if installed.is_dir() else PROJECT_ROOT / "config"


DEFAULTS_DIR = _defaults_dir()
DEFAULT_CONFIG_FILE = DEFAULTS_DIR / "default.yaml"
DEFAULT_COHORTS_DIR = DEFAULTS_DIR / "cohorts"
ENV_PREFIX = "SYNTHPACS_"


# -- converters: each takes a raw value (from YAML, env or a flag) and returns
# -- the typed value or raises ValueError with a short reason.


def _int_in(low: int, high: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("expected an integer")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {value!r}") from None
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}, got {number}")
        return number

    return convert


def _float_in(low: float, high: float) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}, got {number}")
        return number

    return convert


def _string(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError("expected a string")
    return str(value)


def _choice(*choices: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = str(value).strip()
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {text!r}")
        return text

    return convert


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


_AE_PATTERN = re.compile(r"^[\x20-\x5b\x5d-\x7e]*$")  # PS3.5 AE: no backslash, no control chars


def ae_title(value: Any) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("an AE title cannot be empty")
    if len(text) > 16:
        raise ValueError(f"an AE title is at most 16 characters, {text!r} has {len(text)}")
    if not _AE_PATTERN.match(text):
        raise ValueError(f"an AE title may not contain backslashes or control characters: {text!r}")
    return text


def parse_peer(text: str) -> tuple[str, str, int]:
    """``AET=HOST:PORT`` -> (aet, host, port)."""
    aet, sep, address = str(text).partition("=")
    host, colon, port = address.rpartition(":")
    if not sep or not colon or not host:
        raise ValueError(f"expected AET=HOST:PORT, got {text!r}")
    return ae_title(aet), host, _int_in(1, 65535)(port)


def _peers(value: Any) -> dict[str, tuple[str, int]]:
    """Either a mapping {AET: "host:port"} (YAML) or a list of AET=HOST:PORT strings."""
    if value in (None, "", []):
        return {}
    if isinstance(value, Mapping):
        items = [f"{k}={v}" for k, v in value.items()]
    elif isinstance(value, str):
        items = [part for part in value.replace(";", ",").split(",") if part.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError("expected a mapping of AE title to host:port")
    peers = {}
    for item in items:
        aet, host, port = parse_peer(str(item).strip())
        peers[aet] = (host, port)
    return peers


def _ae_list(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [ae_title(item) for item in items if str(item).strip()]


def _weights(value: Any) -> str | dict[str, str]:
    """A folder path, or a mapping {target: folder} (e.g. {chest/lung-ct: runs/lung-ct/final})."""
    if value in (None, ""):
        return ""
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items() if str(v).strip()}
    if isinstance(value, (list, tuple)):
        raise ValueError("expected a folder path or a mapping of target to folder")
    return str(value).strip()


def _renderer(value: Any) -> str | dict[str, str]:
    """Empty (each target's default), one renderer name for every target offering it, or {target: renderer}."""
    if value in (None, ""):
        return ""
    if isinstance(value, Mapping):
        return {str(k): str(v).strip() for k, v in value.items() if str(v).strip()}
    if isinstance(value, (list, tuple)):
        raise ValueError("expected a renderer name or a mapping of target to renderer")
    return str(value).strip()


def _paths(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    items = value.split(os.pathsep) if isinstance(value, str) else list(value)
    return [str(item).strip() for item in items if str(item).strip()]


def _device(value: Any) -> str:
    """auto, cpu, cuda or cuda:N; CUDA is checked here (importing torch) so that asking for it fails at start-up."""
    from .generation.devices import check_device_name, cuda_problem

    text = check_device_name(value)
    if text.startswith("cuda"):
        problem = cuda_problem(text)
        if problem:
            raise ValueError(f"{text!r} {problem}")
    return text


_DAY_PATTERN = re.compile(r"^(\d{8}|\d{4}-\d{2}-\d{2})$")


def _day(value: Any) -> dt.date | None:
    """A calendar date as YYYYMMDD (or YYYY-MM-DD, or a YAML date); 0 or empty: None, the real date at start-up."""
    if isinstance(value, bool):
        raise ValueError(f"expected a date as YYYYMMDD (0: the real date), got {value!r}")
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = "" if value is None else str(value).strip()
    if text in ("", "0"):
        return None
    if _DAY_PATTERN.match(text):
        try:
            return dt.date.fromisoformat(text if "-" in text else f"{text[:4]}-{text[4:6]}-{text[6:]}")
        except ValueError:
            pass
    raise ValueError(f"expected a date as YYYYMMDD (0: the real date), got {value!r}")


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    convert: Callable[[Any], Any]
    help: str


# The one table of settings. Keep it sorted by theme; README documents each
# (tests/test_config.py fails when one is missing there).
SETTINGS: tuple[Setting, ...] = (
    # The universe
    Setting("seed", 20250101, _int_in(0, 2**63 - 1), "Seed of the synthetic universe; everything derives from it."),
    Setting("patients", 1000, _int_in(1, 5_000_000), "Number of patients in the universe."),
    Setting("cohorts_dir", str(DEFAULT_COHORTS_DIR), _string, "Folder of cohort definitions (*.yaml)."),
    Setting(
        "today",
        0,
        _day,
        "The archive's today, YYYYMMDD (0: the real date at start-up): visits on or before it are studies, "
        "later ones scheduled procedure steps; relative cohort schedules count from it.",
    ),
    # Storage
    Setting("data_dir", "data", _string, "Folder for the catalog (SQLite), the instance cache and stored objects."),
    Setting("cache_memory_mb", 512, _int_in(0, 1_000_000), "Size cap of the in-memory instance cache, in MiB."),
    Setting(
        "cache_disk_mb",
        20480,
        _int_in(0, 100_000_000),
        "Size cap of the disk cache of generated instances, in MiB (0: no cap); least recently used studies go first.",
    ),
    # On-demand generation
    Setting(
        "generation_workers",
        2,
        _int_in(1, 64),
        "Threads making study parts (slabs, views) at once (one more: parts a client waits on).",
    ),
    Setting(
        "generation_nice",
        5,
        _int_in(0, 19),
        "Niceness of the generation threads (Linux): requests, and a viewer on the same machine, go first (0: none).",
    ),
    Setting(
        "generating_studies", 2, _int_in(1, 64), "Studies whose shared generation state (geometry, latents) is held at once."
    ),
    Setting(
        "prefetch",
        True,
        _bool,
        "Start generating a study in the background when a client opens it (its metadata, or a QIDO naming it).",
    ),
    Setting("prefetch_queue", 4, _int_in(0, 1000), "Most studies waiting to be prefetched; more are not queued."),
    # Network
    Setting("host", "127.0.0.1", _string, "Address both servers bind to; 0.0.0.0 exposes them to the network."),
    Setting("http_port", 8080, _int_in(0, 65535), "DICOMweb / HTTP port (0 picks a free port)."),
    Setting("dicom_port", 11112, _int_in(0, 65535), "DIMSE port (0 picks a free port)."),
    Setting("ae_title", "SYNTHPACS", ae_title, "The server's DICOM AE title."),
    Setting("peers", {}, _peers, "C-MOVE destinations: AET=HOST:PORT, repeatable."),
    # DIMSE
    Setting(
        "dicom_max_associations",
        32,
        _int_in(1, 1000),
        "Most DIMSE associations served at once; more are rejected (local limit exceeded).",
    ),
    Setting("dicom_allowed_aets", [], _ae_list, "Calling AE titles allowed to associate, comma-separated; empty: any."),
    Setting(
        "dicom_acse_timeout",
        30.0,
        _float_in(0.1, 3600),
        "Seconds to wait for association negotiation and release (and for a silent new connection).",
    ),
    Setting(
        "dicom_dimse_timeout",
        60.0,
        _float_in(0.1, 3600),
        "Seconds to wait for a DIMSE message (e.g. a C-STORE response during C-MOVE or C-GET).",
    ),
    Setting("dicom_network_timeout", 300.0, _float_in(0.1, 86400), "Seconds an association may stay idle before it is aborted."),
    Setting(
        "dicom_connection_timeout", 10.0, _float_in(0.1, 3600), "Seconds to wait for the TCP connection to a C-MOVE destination."
    ),
    Setting("dicom_max_pdu", 131072, _int_in(0, 2**32 - 1), "Largest PDU the server accepts, in bytes (0: no limit)."),
    Setting("worklist_today", 0, _day, "Deprecated alias of today (YYYYMMDD), used only when today is 0."),
    Setting(
        "public_base_url",
        "",
        _string,
        "Public URL of the HTTP server, used in RetrieveURL and BulkDataURI (default: from the request).",
    ),
    Setting("log_level", "INFO", _choice("DEBUG", "INFO", "WARNING", "ERROR"), "Logging level."),
    # DICOMweb
    Setting("max_upload_mb", 512, _int_in(1, 65536), "Largest STOW-RS request body, in MiB; a bigger one is refused with 413."),
    Setting("qido_limit", 1000, _int_in(1, 1_000_000), "Most matches one QIDO-RS response returns; clients page on with offset."),
    Setting(
        "ohif_dir",
        str(PROJECT_ROOT / "third_party" / "ohif"),
        _string,
        "Folder of the OHIF Viewer served at /ohif/ (scripts/install-ohif.sh fills it).",
    ),
    # Generators
    Setting(
        "renderer",
        "",
        _renderer,
        "Photorealism stage: empty for each target's default (the first it offers, e.g. its GAN), a renderer name (teacher) for every target that offers it, or a mapping target: renderer.",
    ),
    Setting(
        "generator_paths",
        [],
        _paths,
        "Extra folders of generator targets (<system>/<target>/ packages exporting TARGET), beside the zoo.",
    ),
    Setting(
        "weights",
        "",
        _weights,
        "Pretrained folder (generator.json + weights.safetensors) replacing the shipped GAN weights; empty: shipped.",
    ),
    Setting("device", "auto", _device, "Where generators run: auto (CUDA when present, else CPU), cpu, cuda or cuda:N."),
    Setting(
        "truncation_psi",
        1.0,
        _float_in(0.0, 1.0),
        "GAN truncation psi: 1 samples the full distribution, 0 gives the mean sample.",
    ),
    Setting("gan_batch_slices", 8, _int_in(1, 1024), "Slices per GAN forward pass when a series is rendered."),
)

SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


class Config:
    """Validated settings, with the source that set each one."""

    def __init__(self, values: dict[str, Any], sources: dict[str, str], files: list[str]):
        self._values = values
        self.sources = sources
        self.files = files

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def replace(self, **overrides: Any) -> Config:
        """A copy with some settings replaced (validated like flags)."""
        values, sources = dict(self._values), dict(self.sources)
        for name, raw in overrides.items():
            values[name] = _convert(name, raw, "override")
            sources[name] = "override"
        return Config(values, sources, self.files)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


def _convert(name: str, raw: Any, source: str) -> Any:
    setting = SETTINGS_BY_NAME.get(name)
    if setting is None:
        raise ConfigError(f"unknown setting {name!r} in {source}")
    try:
        return setting.convert(raw)
    except ValueError as exc:
        raise ConfigError(f"invalid {name} in {source}: {exc}") from None


def load_config(
    config_file: str | os.PathLike | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Merge defaults, a YAML file, the environment and flags, validating each.

    Raises
    ------
    ConfigError
        For an unknown key or an invalid value; the message names both.
    """
    environ = os.environ if environ is None else environ
    values = {s.name: s.convert(s.default) for s in SETTINGS}
    sources = {s.name: "default" for s in SETTINGS}
    files: list[str] = []

    path = config_file or environ.get(ENV_PREFIX + "CONFIG")
    explicit = path is not None
    if path is None and DEFAULT_CONFIG_FILE.is_file():
        path = DEFAULT_CONFIG_FILE
    if path is not None:
        path = Path(path)
        if not path.is_file():
            if explicit:
                raise ConfigError(f"configuration file {str(path)!r} does not exist")
        else:
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"configuration file {str(path)!r} is not valid YAML: {exc}") from None
            if not isinstance(data, dict):
                raise ConfigError(f"configuration file {str(path)!r} must hold a mapping of settings")
            for name, raw in data.items():
                values[name] = _convert(str(name), raw, f"{path}")
                sources[name] = str(path)
            files.append(str(path))

    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        name = key[len(ENV_PREFIX) :].lower()
        values[name] = _convert(name, raw, f"environment variable {key}")
        sources[name] = f"environment variable {key}"

    for name, raw in (flags or {}).items():
        if raw is None or raw == ():
            continue
        flag = "--" + name.replace("_", "-")
        values[name] = _convert(name, raw, f"flag {flag}")
        sources[name] = f"flag {flag}"

    return Config(values, sources, files)
