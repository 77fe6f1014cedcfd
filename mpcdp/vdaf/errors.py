"""Why a VDAF step refused its input, in words a user can act on."""


class VdafError(ValueError):
    """A VDAF step refused its input."""


class DecodeError(VdafError):
    """A message is malformed: wrong length, or a field element not below the modulus."""


class VerifyError(VdafError):
    """A report failed verification: its proof does not show a valid measurement, or the
    aggregators disagree on its joint randomness."""
