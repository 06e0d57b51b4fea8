"""What breaks a hardware profile: :class:`Violation` and the :class:`ConstraintReport` of
:func:`spikelfp.hw_export.check_model` (here so that the kinds' checks can add to it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ProfileViolationError
from .profiles import HardwareProfile

__all__ = ["Violation", "ConstraintReport"]


@dataclass(frozen=True)
class Violation:
    """One broken constraint: where, what, what was found, what is required, and the fix."""

    layer: str
    constraint: str
    found: str
    required: str
    fix: str

    def __str__(self) -> str:
        return (
            f"{self.layer}: {self.constraint}: found {self.found}, required {self.required}"
            f" -> {self.fix}"
        )

    @property
    def message(self) -> str:
        """The violation in one line (``str(violation)``)."""
        return str(self)


@dataclass
class ConstraintReport:
    """Result of :func:`check_model`."""

    profile: HardwareProfile
    violations: list[Violation] = field(default_factory=list)
    warnings: list[Violation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when there is no violation (warnings allowed)."""
        return not self.violations

    def raise_if_violated(self) -> None:
        """Raise :class:`ProfileViolationError` listing every violation, if any."""
        if self.violations:
            raise ProfileViolationError(
                f"the network breaks {len(self.violations)} constraint(s) of the "
                f"{self.profile.name!r} profile:\n  "
                + "\n  ".join(str(v) for v in self.violations),
                self.violations,
            )

    def to_dict(self) -> dict:
        return {
            "profile": self.profile.name,
            "ok": self.ok,
            "violations": [vars(v).copy() for v in self.violations],
            "warnings": [vars(v).copy() for v in self.warnings],
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        head = (
            f"{self.profile.name}: {'OK' if self.ok else 'NOT DEPLOYABLE'} "
            f"({len(self.violations)} violation(s), {len(self.warnings)} warning(s))"
        )
        lines = [head]
        if self.profile.description:
            lines.append(f"  profile: {self.profile.description}")
        lines += [f"  VIOLATION {v}" for v in self.violations]
        lines += [f"  warning   {w}" for w in self.warnings]
        lines += [f"  note      {n}" for n in self.notes]
        return "\n".join(lines)
