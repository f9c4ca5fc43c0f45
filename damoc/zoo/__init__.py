"""The offline demo zoo: tiny real-architecture Chat/Base pairs trained from scratch on a procedural world, and
demo tasks generated from the same world. Importing this package is cheap (torch loads only when building).

    build_zoo(size="test"|"demo", out=None, settings=None, reporter=None, register=False) -> list[ZooCandidate]
    demo_tasks(size="demo", out=None, settings=None) -> list[DemoTask]
"""
from damoc.zoo.build import ZooCandidate, build_zoo, load_manifest
from damoc.zoo.specs import SIZES, recipe
from damoc.zoo.tasks import DemoTask, demo_tasks

__all__ = ["SIZES", "DemoTask", "ZooCandidate", "build_zoo", "demo_tasks", "load_manifest", "recipe"]
