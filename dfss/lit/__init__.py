"""Lightning modules: the YOLOX teacher, the FCOS student, and the distilled student."""

from dfss.lit.detection import DetectionModule, StudentModule, TeacherModule
from dfss.lit.distill import DistillModule

__all__ = ["DetectionModule", "DistillModule", "StudentModule", "TeacherModule"]
