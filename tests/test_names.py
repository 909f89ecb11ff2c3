"""One set of class-name rules: prompts, captions, folders and matching across releases agree."""

import pytest

from splip_core.names import class_key, display_name, folder_name


@pytest.mark.parametrize("spelling", ["hot-air_balloon", "Hot air balloon", "hotairballoon", "hot  air_balloon "])
def test_every_release_spelling_of_a_class_has_one_key(spelling):
    assert class_key(spelling) == class_key("hot air balloon") == "hotairballoon"


def test_display_and_folder_names_invert_each_other():
    assert display_name("light_bulb") == "light bulb" and folder_name("light bulb") == "light_bulb"
    assert display_name("hot-air_balloon") == "hot-air balloon"
    assert display_name(folder_name("  teddy   bear ")) == "teddy bear"
    assert class_key("car (sedan)") != class_key("car")


def test_the_model_the_datasets_and_the_demo_use_these_rules():
    from demo import state
    from splip_core import model
    from splip_core.data import datasets
    from splip_core.mini import world

    assert model.display_name is display_name and datasets.class_key is class_key
    assert state.class_key is class_key and world.folder_name is folder_name
