"""Method name -> drafter class. The runner and eval.sh ask here; nothing else lists methods.

Entries are "module:Class" strings imported on first use, so listing methods never imports a
method's dependencies.
"""

from __future__ import annotations

import importlib

METHODS: dict[str, str] = {
    "vanilla": "methods.drafters.vanilla:VanillaDrafter",
    "sps": "methods.drafters.sps:DraftModelDrafter",
    "pld": "methods.drafters.pld:PromptLookupDrafter",
    # Training-free methods of the second wave register below this line.
    "lookahead": "methods.drafters.lookahead:LookaheadDrafter",
    "rest": "methods.drafters.rest:RestDrafter",
    "recycling": "methods.drafters.recycling:TokenRecyclingDrafter",
    "samd": "methods.drafters.samd:SamdDrafter",
    "suffix": "methods.drafters.suffix:SuffixDrafter",
    # Trained drafters (heads in methods/heads/, training in training/).
    "medusa": "methods.drafters.medusa:MedusaDrafter",
    "hydra": "methods.drafters.hydra:HydraDrafter",
    "eagle": "methods.drafters.eagle:EagleDrafter",
    "eagle2": "methods.drafters.eagle2:Eagle2Drafter",
    "eagle3": "methods.drafters.eagle3:Eagle3Drafter",
    "space": "methods.drafters.space:SpaceDrafter",
    "dflash": "methods.drafters.dflash:DFlashDrafter",
}


class UnknownMethodError(ValueError):
    pass


def available_methods() -> list[str]:
    return list(METHODS)


def drafter_class(name: str):
    try:
        target = METHODS[name]
    except KeyError:
        raise UnknownMethodError(
            f"unknown method {name!r}; available: {', '.join(available_methods())}"
        ) from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)
