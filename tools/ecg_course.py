"""Write one trial subject's 12-lead ECG at baseline and on treatment, one chart above the other, to look at.

The subject is the first in the default universe whose QTc the drug raises
(a responder) and who has an ECG at baseline and at a later visit; each chart
is exactly what WADO-RS ``/rendered`` serves for that instance.

Usage::

    python tools/ecg_course.py OUT.png [--data-dir DIR] [--visit 4]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydicom import dcmread  # noqa: E402

from synthpacs.archive import Archive  # noqa: E402
from synthpacs.config import load_config  # noqa: E402
from synthpacs.imaging.render import render_frame  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--visit", type=int, default=4, help="the on-treatment visit shown")
    args = parser.parse_args()
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="ecg-course-")
    archive = Archive(load_config(None, {"data_dir": data_dir}))
    generator = archive.generator("heart/ecg")
    universe = archive._universe
    for patient in range(universe.n_patients):
        ecgs = {s.visit: s for s in universe.studies_of(patient) if s.exam.target == "heart/ecg" and universe.is_performed(s)}
        if 0 not in ecgs or args.visit not in ecgs:
            continue
        if not generator.make(archive.study_request(ecgs[0].study_instance_uid)).rhythm.responder:
            continue
        charts = []
        for visit in (0, args.visit):
            (ref,) = archive.instances(ecgs[visit].study_instance_uid)
            charts.append(render_frame(dcmread(io.BytesIO(archive.instance_bytes(ref)))))
        canvas = Image.new("RGB", (charts[0].width, sum(c.height for c in charts)), "white")
        canvas.paste(charts[0], (0, 0))
        canvas.paste(charts[1], (0, charts[0].height))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        canvas.save(args.out, optimize=True)
        print(f"wrote {args.out}: patient {ecgs[0].patient.patient_id}, visits 0 and {args.visit}")
        return
    raise SystemExit("no responder with ECGs at both visits in this universe")


if __name__ == "__main__":
    main()
