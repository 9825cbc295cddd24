"""Geometry stage for synthetic lung-cancer chest CT: anatomy and lesion label maps.

The chest is drawn analytically in DICOM patient coordinates (LPS, millimetres):
smooth functions of ``(x, y, z)`` give the body layers (skin, fat, muscle), the
thoracic cavity, the lungs, the diaphragm with the liver dome, the heart, the
spine, ribs, sternum and scapulae; they are evaluated slice by slice.  Tubular
structures (airways, aorta and great vessels, the pulmonary artery and vein
trees) are chains of spheres splatted into the volume.  Everything random is
drawn once by :func:`draw_anatomy` and frozen in :class:`ChestAnatomy`, so one
patient's anatomy is identical at every visit; only the lesions change, each a
fixed irregular shape (:class:`LesionShape`) scaled to the visit's diameter.

Coordinates follow :class:`CTGrid` (:class:`synthpacs.imaging.spatial.VolumeGrid`):
column index -> +x (patient left), row index -> +y (posterior), slice index ->
-z (slice 0 is the most superior).

Modules, in the order a label volume is made:

* :mod:`.anatomy`: the frozen parameters (:class:`ChestAnatomy`) and :func:`draw_anatomy`;
* :mod:`.fields`: smooth fields of the chest (body layers, lungs, mediastinum);
* :mod:`.body`: the slice rasteriser (body layers, organs, spine, ribs, sternum, scapulae);
* :mod:`.vessels`: the airway and vessel network, from the named control points
  of ``airways_vessels.json`` and trees grown into the lungs; :mod:`.tubes` splats it;
* :mod:`.lesions`, :mod:`.placement`: lesion shapes, their drawing and their sites;
* :mod:`.volume`: :func:`label_volume`, :class:`VisitLabels` (made slab by slab); :mod:`.measure`: :func:`lesion_measurement`;
* :mod:`.labels`: the :class:`Label` codes.
"""

from synthpacs.imaging.spatial import VolumeGrid

from .anatomy import ChestAnatomy, draw_anatomy
from .labels import Label
from .lesions import LesionShape, LesionSite
from .measure import LesionMeasurement, lesion_measurement
from .placement import place_lesions
from .volume import VisitLabels, label_volume

#: The grid type under its historical name.
CTGrid = VolumeGrid

__all__ = [
    "CTGrid",
    "ChestAnatomy",
    "Label",
    "LesionMeasurement",
    "LesionShape",
    "LesionSite",
    "VisitLabels",
    "draw_anatomy",
    "label_volume",
    "lesion_measurement",
    "place_lesions",
]
