"""The per-layer declaration (search_spaces.layered) and the pruning contract (PrunableSpace)."""

from __future__ import annotations

import pytest

from nas.io.registry import build_space
from search_spaces.channels import PrunableSpace
from search_spaces.layered import LayeredSpace


class Tiny(LayeredSpace):
    """The README's example space, minus the models."""

    name = "tiny"

    def __init__(self, depth: int = 3) -> None:
        self.depth = depth

    def layer_choices(self):
        return [{"kernel": (3, 5)}] * self.depth + [{"kernel": (3, 5), "skip": self.depth}]

    def format_layer(self, layer, values):
        return f"k{values['kernel']}" + ("<" + ",".join(map(str, values["skip"])) if values.get("skip") else "")

    def parse_layer(self, layer, token):
        kernel, _, skip = token.partition("<")
        values = {"kernel": int(kernel[1:])}
        return {**values, "skip": tuple(int(v) for v in skip.split(",") if v)} if layer == self.depth else values

    supernet = build = layers = None  # type: ignore[assignment]


@pytest.mark.parametrize("attribute", ["shrinking_keys", "unsized_keys"])
def test_a_declared_key_no_layer_has_is_refused(attribute):
    misspelled = type("Misspelled", (Tiny,), {attribute: ("kernel", "kernal")})()
    with pytest.raises(ValueError, match=rf"Misspelled.{attribute} names \['kernal'\].*its keys: \['kernel', 'skip'\]"):
        misspelled.decisions


def test_decisions_and_codec_come_from_the_one_declaration():
    space = Tiny()
    assert [d.name for d in space.decisions] == ["l0_kernel", "l1_kernel", "l2_kernel", "l3_kernel", "l3_skip"]
    arch = space.arch_from_string("k3|k5|k3|k5<0,2")
    assert arch["l3_skip"] == (0, 2) and space.arch_string(arch) == "k3|k5|k3|k5<0,2"
    assert space.layer_values(arch)[1] == {"kernel": 5}
    with pytest.raises(ValueError, match="has 2 layers"):
        space.arch_from_string("k3|k5")


@pytest.mark.parametrize("target", ["search_spaces.mobilenetv3.MobileNetV3Space", "search_spaces.enas_macro.EnasMacroSpace"])
def test_built_in_spaces_declare_pruning_support(target):
    assert isinstance(build_space({"_target_": target}), PrunableSpace)
