"""Procedural synthetic masks: polygons, ellipses, blobs, unions, holes and thin structures.

Everything is vectorised torch on any device, driven by a ``torch.Generator`` on that device, so
the same call gives the same masks for the same generator state (this is what makes training
resumable) and a GPU trainer can draw thousands of masks per step without a CPU round trip.

    gen = torch.Generator().manual_seed(0)
    masks = generate_synthetic_masks(64, 256, generator=gen)       # (64, 256, 256) bool

Shapes live in a unit square [0, 1]² mapped onto the (H, W) frame. Every returned mask is
non-empty: a sample whose shape happens to vanish (a thin line leaving the frame, a hole eating
its shape) is replaced by an ellipse, which always covers its own centre pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

KINDS = ("polygon", "ellipse", "blob", "union", "holes", "thin")


@dataclass(frozen=True)
class SyntheticMaskConfig:
    """Mixture of shape kinds and their size ranges (fractions of the frame side).

    Attributes:
        kinds: shape kinds to draw from (subset of :data:`KINDS`).
        weights: relative probability of each kind (same length as ``kinds``).
        radius: (min, max) radius of ellipses and polygons.
        max_vertices: largest polygon vertex count (≥ 3).
        thin_width: (min, max) stroke width of thin structures, in pixels.
    """

    kinds: tuple[str, ...] = KINDS
    weights: tuple[float, ...] = (0.22, 0.16, 0.2, 0.16, 0.12, 0.14)
    radius: tuple[float, float] = (0.03, 0.45)
    max_vertices: int = 12
    thin_width: tuple[float, float] = (1.5, 6.0)

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"synthetic mask kinds must be a non-empty subset of {KINDS}, got {self.kinds}")
        if len(self.weights) != len(self.kinds) or any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise ValueError(f"weights must be {len(self.kinds)} non-negative numbers with a positive sum, "
                             f"got {self.weights}")
        if not 0 < self.radius[0] <= self.radius[1]:
            raise ValueError(f"radius must be (min, max) with 0 < min ≤ max, got {self.radius}")
        if self.max_vertices < 3:
            raise ValueError(f"max_vertices must be ≥ 3, got {self.max_vertices}")
        if not 0 < self.thin_width[0] <= self.thin_width[1]:
            raise ValueError(f"thin_width must be (min, max) with 0 < min ≤ max, got {self.thin_width}")


def _uniform(n: int, low: float, high: float, gen: torch.Generator | None, device: torch.device,
             *shape: int) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, *shape, generator=gen, device=device)


def _grid(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates in the unit square: ys (H, 1), xs (1, W)."""
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    return ys.view(height, 1), xs.view(1, width)


def _ellipses(n: int, size: tuple[int, int], cfg: SyntheticMaskConfig, gen, device,
              centre: torch.Tensor | None = None, scale: torch.Tensor | None = None) -> torch.Tensor:
    """(n, H, W) filled rotated ellipses; optional centres (n, 2) (x, y) and radius scale (n,)."""
    ys, xs = _grid(*size, device)
    if centre is None:
        centre = _uniform(n, 0.1, 0.9, gen, device, 2)
    radii = _uniform(n, cfg.radius[0], cfg.radius[1], gen, device, 2)
    if scale is not None:
        radii = radii * scale.view(n, 1)
    # Keep every ellipse at least about one pixel wide so it covers its centre pixel.
    radii = torch.maximum(radii, torch.tensor(1.0 / min(size), device=device))
    angle = _uniform(n, 0.0, math.pi, gen, device)
    cos, sin = angle.cos().view(n, 1, 1), angle.sin().view(n, 1, 1)
    dx = xs.unsqueeze(0) - centre[:, 0].view(n, 1, 1)
    dy = ys.unsqueeze(0) - centre[:, 1].view(n, 1, 1)
    u = (dx * cos + dy * sin) / radii[:, 0].view(n, 1, 1)
    v = (-dx * sin + dy * cos) / radii[:, 1].view(n, 1, 1)
    return u * u + v * v <= 1.0


def _polygons(n: int, size: tuple[int, int], cfg: SyntheticMaskConfig, gen, device,
              centre: torch.Tensor | None = None) -> torch.Tensor:
    """(n, H, W) star-shaped simple polygons with 3 … max_vertices vertices (even-odd fill)."""
    ys, xs = _grid(*size, device)
    k = cfg.max_vertices
    if centre is None:
        centre = _uniform(n, 0.15, 0.85, gen, device, 2)
    counts = torch.randint(3, k + 1, (n,), generator=gen, device=device)
    angles = torch.rand(n, k, generator=gen, device=device).sort(dim=1).values * (2 * math.pi)
    angles = angles + _uniform(n, 0.0, 2 * math.pi, gen, device).view(n, 1)
    radius = _uniform(n, cfg.radius[0], cfg.radius[1], gen, device).view(n, 1)
    radii = radius * _uniform(n, 0.35, 1.0, gen, device, k)
    vx = centre[:, :1] + radii * angles.cos()
    vy = centre[:, 1:] + radii * angles.sin()
    # Vertices beyond a polygon's count repeat vertex 0: they only add degenerate edges.
    unused = torch.arange(k, device=device).view(1, k) >= counts.view(n, 1)
    vx = torch.where(unused, vx[:, :1], vx)
    vy = torch.where(unused, vy[:, :1], vy)
    inside = torch.zeros(n, *size, dtype=torch.bool, device=device)
    y = ys.unsqueeze(0)
    x = xs.unsqueeze(0)
    for i in range(k):
        j = (i + 1) % k
        xi, yi = vx[:, i].view(n, 1, 1), vy[:, i].view(n, 1, 1)
        xj, yj = vx[:, j].view(n, 1, 1), vy[:, j].view(n, 1, 1)
        straddles = (yi > y) != (yj > y)
        denom = torch.where((yj - yi).abs() < 1e-12, torch.full_like(yj, 1e-12), yj - yi)
        crossing_x = xi + (xj - xi) * (y - yi) / denom
        inside ^= straddles & (x < crossing_x)
    return inside


def _blobs(n: int, size: tuple[int, int], cfg: SyntheticMaskConfig, gen, device) -> torch.Tensor:
    """(n, H, W) smooth random blobs: low-resolution noise upsampled, minus a radial falloff,
    thresholded at a random fill fraction (may give several components)."""
    ys, xs = _grid(*size, device)
    side = int(torch.randint(3, 9, (1,), generator=gen, device=device).item())
    noise = torch.rand(n, 1, side, side, generator=gen, device=device)
    field = F.interpolate(noise, size=size, mode="bicubic", align_corners=False)[:, 0]
    centre = _uniform(n, 0.2, 0.8, gen, device, 2)
    falloff = _uniform(n, 0.5, 4.0, gen, device).view(n, 1, 1)
    dist2 = (xs.unsqueeze(0) - centre[:, 0].view(n, 1, 1)) ** 2 + (ys.unsqueeze(0) - centre[:, 1].view(n, 1, 1)) ** 2
    field = field - falloff * dist2
    fill = _uniform(n, 0.02, 0.45, gen, device)
    flat = field.reshape(n, -1)
    rank = ((1.0 - fill) * (flat.shape[1] - 1)).long().clamp(0, flat.shape[1] - 1) + 1
    threshold = flat.sort(dim=1).values.gather(1, (rank - 1).view(n, 1)).view(n)
    return field > threshold.view(n, 1, 1)


def _thin(n: int, size: tuple[int, int], cfg: SyntheticMaskConfig, gen, device) -> torch.Tensor:
    """(n, H, W) thin structures: a random 2–5 segment polyline stroked at 1.5–6 px."""
    ys, xs = _grid(*size, device)
    segments = 5
    points = _uniform(n, 0.05, 0.95, gen, device, segments + 1, 2)
    used = torch.randint(2, segments + 1, (n,), generator=gen, device=device)
    width = _uniform(n, cfg.thin_width[0], cfg.thin_width[1], gen, device) / min(size)
    best = torch.full((n, *size), float("inf"), device=device)
    y, x = ys.unsqueeze(0), xs.unsqueeze(0)
    for s in range(segments):
        ax, ay = points[:, s, 0].view(n, 1, 1), points[:, s, 1].view(n, 1, 1)
        bx, by = points[:, s + 1, 0].view(n, 1, 1), points[:, s + 1, 1].view(n, 1, 1)
        abx, aby = bx - ax, by - ay
        t = ((x - ax) * abx + (y - ay) * aby) / (abx * abx + aby * aby).clamp(min=1e-12)
        t = t.clamp(0.0, 1.0)
        dist = torch.sqrt((x - ax - t * abx) ** 2 + (y - ay - t * aby) ** 2)
        dist = torch.where((s < used).view(n, 1, 1), dist, torch.full_like(dist, float("inf")))
        best = torch.minimum(best, dist)
    return best <= width.view(n, 1, 1) / 2


def _base_shapes(n: int, size, cfg, gen, device) -> torch.Tensor:
    """Half ellipses, half polygons, in a random order."""
    pick = torch.rand(n, generator=gen, device=device) < 0.5
    return torch.where(pick.view(n, 1, 1), _ellipses(n, size, cfg, gen, device), _polygons(n, size, cfg, gen, device))


def _unions(n: int, size, cfg, gen, device) -> torch.Tensor:
    """(n, H, W) union of 2–3 shapes (overlapping or disjoint: multi-component masks)."""
    out = _base_shapes(n, size, cfg, gen, device) | _base_shapes(n, size, cfg, gen, device)
    third = torch.rand(n, generator=gen, device=device) < 0.4
    return out | (_base_shapes(n, size, cfg, gen, device) & third.view(n, 1, 1))


def _holes(n: int, size, cfg, gen, device) -> torch.Tensor:
    """(n, H, W) a large shape with one or two smaller shapes cut out of it."""
    big = SyntheticMaskConfig(radius=(max(cfg.radius[0], 0.2), max(cfg.radius[1], 0.2)),
                              max_vertices=cfg.max_vertices, thin_width=cfg.thin_width)
    centre = _uniform(n, 0.3, 0.7, gen, device, 2)
    outer = _ellipses(n, size, big, gen, device, centre=centre)
    # Polygons get a convex-ish outline (radii 0.35–1 of their radius) and smaller holes.
    polygon = _polygons(n, size, big, gen, device, centre=centre)
    use_polygon = (torch.rand(n, generator=gen, device=device) < 0.4).view(n, 1, 1)
    outer = torch.where(use_polygon, polygon, outer)
    hole_centre = centre + _uniform(n, -0.05, 0.05, gen, device, 2)
    hole = _ellipses(n, size, cfg, gen, device, centre=hole_centre, scale=_uniform(n, 0.1, 0.35, gen, device))
    second = _ellipses(n, size, cfg, gen, device, centre=centre + _uniform(n, -0.15, 0.15, gen, device, 2),
                       scale=_uniform(n, 0.05, 0.2, gen, device))
    second &= (torch.rand(n, generator=gen, device=device) < 0.5).view(n, 1, 1)
    return outer & ~hole & ~second


_GENERATORS = {"polygon": _polygons, "ellipse": _ellipses, "blob": _blobs, "union": _unions,
               "holes": _holes, "thin": _thin}


def _check_size(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 4 for s in size)):
        raise ValueError(f"size must be an int ≥ 4 or (height, width) of ints ≥ 4, got {size!r}")
    return int(size[0]), int(size[1])


def generate_synthetic_masks(n: int, size: int | tuple[int, int] = 256, *, generator: torch.Generator | None = None,
                             device: str | torch.device | None = None,
                             config: SyntheticMaskConfig | None = None,
                             return_kinds: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[str]]:
    """Draw ``n`` non-empty synthetic masks.

    Args:
        n: number of masks (≥ 0).
        size: frame side or (H, W).
        generator: randomness source (must live on ``device``); None uses torch's global RNG.
        device: where to build them (default: the generator's device, else CPU).
        config: shape mixture, see :class:`SyntheticMaskConfig`.
        return_kinds: also return each mask's kind name.

    Returns:
        (n, H, W) bool tensor on ``device`` (and the list of kinds if asked).
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    height, width = _check_size(size)
    cfg = config or SyntheticMaskConfig()
    device = torch.device(device) if device is not None else (generator.device if generator is not None
                                                                else torch.device("cpu"))
    if generator is not None and generator.device.type != device.type:
        raise ValueError(f"generator lives on {generator.device} but masks are requested on {device}")
    weights = torch.tensor(cfg.weights, dtype=torch.float32, device=device)
    picks = torch.multinomial(weights, n, replacement=True, generator=generator) if n else \
        torch.zeros(0, dtype=torch.long, device=device)
    out = torch.zeros(n, height, width, dtype=torch.bool, device=device)
    pick_list = picks.tolist()
    for index, kind in enumerate(cfg.kinds):
        rows = [i for i, p in enumerate(pick_list) if p == index]
        if rows:
            out[torch.tensor(rows, device=device)] = _GENERATORS[kind](len(rows), (height, width), cfg, generator, device)
    empty = ~out.flatten(1).any(dim=1)
    if bool(empty.any()):
        rows = torch.nonzero(empty).flatten()
        out[rows] = _ellipses(len(rows), (height, width), cfg, generator, device)
    if return_kinds:
        kinds = [cfg.kinds[p] if not bool(empty[i]) else "ellipse" for i, p in enumerate(pick_list)]
        return out, kinds
    return out
