"""Materials of the synthetic scanner: linear attenuation coefficients at the two beam energies.

Values are NIST XCOM figures at 60 keV (low channel) and 100 keV (high channel), μ in cm⁻¹
(see ``/work/shared/notes/xray-imaging.md`` §3). Glass has no table there; it is placed between water
and aluminium as the notes suggest. Attenuation is linear in thickness, so a scene only needs the two
sums ``A_E = Σ μ_E(material)·t`` and never a per-material map.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

LOW_ENERGY_KEV = 60
HIGH_ENERGY_KEV = 100


@dataclass(frozen=True)
class Attenuation:
    """μ in cm⁻¹ at the low and high energy, and the coarse class a scanner would colour it as."""

    mu_low: float
    mu_high: float
    kind: str  # "organic" (orange), "inorganic" (green) or "metal" (blue)

    @property
    def ratio(self) -> float:
        """μ_L / μ_H: the thickness-free material signature R = A_L / A_H of a single material."""
        return self.mu_low / self.mu_high


class Material(Enum):
    """Every material a part can be made of."""

    ORGANIC = Attenuation(0.206, 0.171, "organic")  # water: liquids, food, leather, wood, paper
    PLASTIC = Attenuation(0.188, 0.160, "organic")  # adipose-like: plastics, rubber, fabric
    GLASS = Attenuation(0.560, 0.390, "inorganic")  # between water and Al per the notes (ρ≈2.5)
    ALUMINIUM = Attenuation(0.750, 0.460, "inorganic")
    STEEL = Attenuation(9.49, 2.93, "metal")
    COPPER = Attenuation(14.3, 4.11, "metal")

    @property
    def mu_low(self) -> float:
        return self.value.mu_low

    @property
    def mu_high(self) -> float:
        return self.value.mu_high

    @property
    def kind(self) -> str:
        return self.value.kind
