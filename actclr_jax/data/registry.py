"""Every supported data set, declared once: layout, classes, splits and how it is prepared.

The prepare command line (`python -m actclr_jax.data.prepare`), `pipeline.load_data` and the
configs (`configs/common.py`) read this table. It imports no numerical library, so that a
config can read it cheaply; a preparer's module is imported only when it is called.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from typing import Callable

NTU60_CLASSES = (
    "drink water", "eat meal/snack", "brushing teeth", "brushing hair", "drop", "pickup",
    "throw", "sitting down", "standing up (from sitting position)", "clapping", "reading",
    "writing", "tear up paper", "wear jacket", "take off jacket", "wear a shoe",
    "take off a shoe", "wear on glasses", "take off glasses", "put on a hat/cap",
    "take off a hat/cap", "cheer up", "hand waving", "kicking something", "reach into pocket",
    "hopping (one foot jumping)", "jump up", "make a phone call/answer phone",
    "playing with phone/tablet", "typing on a keyboard", "pointing to something with finger",
    "taking a selfie", "check time (from watch)", "rub two hands together", "nod head/bow",
    "shake head", "wipe face", "salute", "put the palms together",
    "cross hands in front (say stop)", "sneeze/cough", "staggering", "falling",
    "touch head (headache)", "touch chest (stomachache/heart pain)", "touch back (backache)",
    "touch neck (neckache)", "nausea or vomiting condition",
    "use a fan (with hand or paper)/feeling warm", "punching/slapping other person",
    "kicking other person", "pushing other person", "pat on back of other person",
    "point finger at the other person", "hugging other person",
    "giving something to other person", "touch other person's pocket", "handshaking",
    "walking towards each other", "walking apart from each other",
)
NTU120_CLASSES = NTU60_CLASSES + (
    "put on headphone", "take off headphone", "shoot at the basket", "bounce ball",
    "tennis bat swing", "juggling table tennis balls", "hush (quiet)", "flick hair", "thumb up",
    "thumb down", "make ok sign", "make victory sign", "staple book", "counting money",
    "cutting nails", "cutting paper (using scissors)", "snapping fingers", "open bottle",
    "sniff (smell)", "squat down", "toss a coin", "fold paper", "ball up paper",
    "play magic cube", "apply cream on face", "apply cream on hand back", "put on bag",
    "take off bag", "put something into a bag", "take something out of a bag", "open a box",
    "move heavy objects", "shake fist", "throw up cap/hat", "hands up (both hands)",
    "cross arms", "arm circles", "arm swings", "running on the spot",
    "butt kicks (kick backward)", "cross toe touch", "side kick", "yawn", "stretch oneself",
    "blow nose", "hit other person with something", "wield knife towards other person",
    "knock over other person (hit with body)", "grab other person's stuff",
    "shoot at other person with a gun", "step on foot", "high-five", "cheers and drink",
    "carry something with other person", "take a photo of other person",
    "follow other person", "whisper in other person's ear",
    "exchange things with other person", "support somebody with hand",
    "finger-guessing game (playing rock-paper-scissors)",
)
# PKU-MMD's label ids 1-51 follow its alphabetical action list (41 daily actions and 10
# interactions, a subset of NTU's).
PKU_MMD_CLASSES = (
    "bow", "brushing hair", "brushing teeth", "check time (from watch)", "cheer up", "clapping",
    "cross hands in front (say stop)", "drink water", "drop", "eat meal/snack", "falling",
    "giving something to other person", "hand waving", "handshaking",
    "hopping (one foot jumping)", "hugging other person", "jump up", "kicking other person",
    "kicking something", "make a phone call/answer phone", "pat on back of other person",
    "pickup", "playing with phone/tablet", "point finger at the other person",
    "pointing to something with finger", "punching/slapping other person",
    "pushing other person", "put on a hat/cap", "put something inside pocket", "reading",
    "rub two hands together", "salute", "sitting down", "standing up", "take off a hat/cap",
    "take off glasses", "take off jacket", "take out something from pocket", "taking a selfie",
    "tear up paper", "throw", "touch back (backache)", "touch chest (stomachache/heart pain)",
    "touch head (headache)", "touch neck (neckache)", "typing on a keyboard",
    "use a fan (with hand or paper)/feeling warm", "wear jacket", "wear on glasses",
    "wipe face", "writing",
)
# Labels 1-10 are the action codes a01-a06, a08, a09, a11, a12.
NWUCLA_CLASSES = (
    "pick up with one hand", "pick up with two hands", "drop trash", "walk around",
    "sit down", "stand up", "donning", "doffing", "throw", "carry",
)
MSR_CLASSES = (
    "high arm wave", "horizontal arm wave", "hammer", "hand catch", "forward punch",
    "high throw", "draw x", "draw tick", "draw circle", "hand clap", "two hand wave",
    "side-boxing", "bend", "forward kick", "side kick", "jogging", "tennis swing",
    "tennis serve", "golf swing", "pick up & throw",
)
# The synthetic generator's classes, in label order (prepare/synthetic_actions.py moves the
# joints of each).
SYNTHETIC_CLASSES = (
    "raise right hand", "wave right hand", "right arm circles", "wave left hand",
    "punch (left)", "clap", "kick (right leg)", "nod", "tilt head", "bend down", "squat", "jump",
)


@dataclasses.dataclass(frozen=True)
class DataSet:
  """One data set.

  Attributes:
    name: the `data.dataset` value and the prepare command's first argument.
    layout: the skeleton layout (`graph.get_layout`), i.e. V joints.
    max_bodies: M of the prepared (N, 3, T, V, M) arrays.
    class_names: one name per label, in label order.
    splits: the split folders `prepare` writes, `{root}/{split}/`.
    default_split: the split a config uses when its argument names none.
    preparer: 'module:function' under `actclr_jax.data.prepare`, called as
      function(raw_dir, out_dir, **options) (or function(out_dir, **options) when generated).
    preparer_kwargs: fixed keyword arguments of the preparer, (name, value) pairs.
    generated: no raw files: the set is generated (from a seed) and `pipeline.load_data`
      writes it on first use.
  """

  name: str
  layout: str
  max_bodies: int
  class_names: tuple[str, ...]
  splits: tuple[str, ...]
  default_split: str
  preparer: str
  preparer_kwargs: tuple[tuple[str, object], ...] = ()
  generated: bool = False

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def root(self) -> str:
    """The default `data.root`."""
    return f"data/{self.name}"

  def prepare_function(self) -> Callable[..., dict]:
    """The preparer with its fixed arguments bound; returns the summary dict it writes."""
    module, function = self.preparer.split(":")
    target = getattr(importlib.import_module(f"actclr_jax.data.prepare.{module}"), function)
    return functools.partial(target, **dict(self.preparer_kwargs))


def _ntu(name: str, classes: tuple[str, ...], splits: tuple[str, ...]) -> DataSet:
  return DataSet(name, "ntu", 2, classes, splits, splits[1], "ntu:prepare",
                 (("variant", name),))


def _pku_mmd(part: int) -> DataSet:
  return DataSet(f"pku_mmd{part}", "ntu", 2, PKU_MMD_CLASSES, ("xsub", "xview"), "xsub",
                 "pku_mmd:prepare", (("part", part),))


DATASETS: dict[str, DataSet] = {d.name: d for d in (
    _ntu("ntu60", NTU60_CLASSES, ("xsub", "xview")),
    _ntu("ntu120", NTU120_CLASSES, ("xsub", "xset")),
    _pku_mmd(1),
    _pku_mmd(2),
    DataSet("nwucla", "kinect_v1", 1, NWUCLA_CLASSES, ("xview",), "xview", "nwucla:prepare"),
    DataSet("msr", "msr", 1, MSR_CLASSES, ("xsub",), "xsub", "msr:prepare"),
    DataSet("synthetic", "ntu", 2, SYNTHETIC_CLASSES, ("xsub", "xview"), "xsub",
            "synthetic:prepare", generated=True),
)}


def get(name: str, key: str = "data.dataset") -> DataSet:
  """The registered data set `name`; an unknown name is an error naming config key `key`."""
  if name not in DATASETS:
    raise ValueError(f"Unknown data set {name!r} (config key {key}); expected one of "
                     f"{sorted(DATASETS)}")
  return DATASETS[name]
