"""The twin's option dataclass against the core's generated options schema.

``schema/options.schema.json`` is derived from the Rust option structs (``cargo run --release -p
gqa-core --example gen-schema``; ``crates/gqa-core/tests/schema.rs`` keeps it current). The
Python twin restates the options by hand (it ships without the schema), so this test checks that
:class:`gqa_torch.config.GqaConfig` has exactly the schema's options with the schema's defaults.

Needs no torch: ``config.py`` is loaded by path. Run:
``python3 -m unittest discover -s python/tests -p test_schema.py -v``.
"""

import dataclasses
import importlib.util
import json
import os
import sys
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_config_module():
    path = os.path.join(REPO, "python", "src", "gqa_torch", "config.py")
    spec = importlib.util.spec_from_file_location("gqa_torch_config_alone", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


class SchemaTest(unittest.TestCase):
    def test_python_config_has_the_schema_options_and_defaults(self):
        with open(os.path.join(REPO, "schema", "options.schema.json"), encoding="utf-8") as f:
            model = json.load(f)["$defs"]["GqaConfig"]
        config = load_config_module()
        fields = {config._camel(f.name): f for f in dataclasses.fields(config.GqaConfig)}
        self.assertEqual(sorted(fields), sorted(model["properties"]))
        for name, prop in model["properties"].items():
            f = fields[name]
            if name in model.get("required", []):
                self.assertIs(f.default, dataclasses.MISSING, name)
            elif "default" in prop:
                self.assertEqual(f.default, prop["default"], name)
            else:
                self.assertIsNone(f.default, name)

    def test_the_deprecated_window_size_name_still_reads_as_seq_len_hint(self):
        config = load_config_module()
        self.assertEqual(config.GqaConfig.from_dict({"embedDim": 2, "windowSize": 7}).seq_len_hint, 7)
        self.assertEqual(config.GqaConfig.from_dict({"embedDim": 2, "seqLenHint": 9}).to_dict()["seqLenHint"], 9)
        with self.assertRaises(config.GqaOptionError):
            config.GqaConfig.from_dict({"embedDim": 2, "windowSize": 7, "seqLenHint": 9})
        # The same former names as the core's serde aliases (the schema's x-deprecatedNames).
        with open(os.path.join(REPO, "schema", "options.schema.json"), encoding="utf-8") as f:
            deprecated = {d["name"]: d["use"] for d in json.load(f)["x-deprecatedNames"]}
        self.assertEqual({k: config._camel(v) for k, v in config.DEPRECATED_OPTION_NAMES.items()}, deprecated)


if __name__ == "__main__":
    unittest.main()
