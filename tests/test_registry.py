from __future__ import annotations

import pytest

from nowcast_cli.errors import UnknownNameError
from nowcast_cli.io import READERS
from nowcast_cli.registry import Registry


def test_register_get_describe() -> None:
    reg: Registry[object] = Registry("thing")

    @reg.register("Alpha")
    class Alpha:
        """First line.

        More.
        """

    assert reg.get("alpha") is Alpha
    assert reg.get("ALPHA") is Alpha
    assert reg.names() == ["alpha"]
    assert reg.describe() == {"alpha": "First line."}
    assert "alpha" in reg
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha")(Alpha)


def test_unknown_name_suggests() -> None:
    reg: Registry[int] = Registry("model")
    reg.register("convlstm")(1)
    reg.register("trajgru")(2)
    with pytest.raises(UnknownNameError) as exc:
        reg.get("convlstn")
    assert (
        str(exc.value)
        == "unknown model 'convlstn'. Did you mean 'convlstm'? Valid models: convlstm, trajgru"
    )


@pytest.mark.parametrize("name", READERS.names())
def test_every_reader_describes_itself(name: str) -> None:
    cls = READERS.get(name)
    assert cls.name == name
    assert READERS.describe()[name]
    assert cls.attribution
    a, b = cls.zr
    assert a > 0
    assert b > 0


def test_unknown_loss_lists_the_valid_losses() -> None:
    from nowcast_cli.losses import LOSSES

    with pytest.raises(UnknownNameError, match=r"Valid losses: ff-logcosh, ") as exc:
        LOSSES.get("nope")
    assert "losss" not in str(exc.value)
