"""Benchmark annotations computed from a generated scene graph, in the real files' formats.

ScanRefer   records: scene_id, object_id (str), object_name, ann_id (str), description, token
Multi3DRefer records: scene_id, object_name, ann_id, description, object_ids (list[int]), eval_type
            (zt_w_d / zt_wo_d / st_w_d / st_wo_d / mt)
Scan2Cap    uses the ScanRefer records (one caption per description of an object)
ScanQA      records: question_id, scene_id, question, answers (list), object_ids, object_names,
            subject_object_ids (ours: the objects the question names)
SQA3D       questions file {"questions": [...]}: scene_id, situation, alternative_situation,
            question, question_id; annotations file {"annotations": [...]}: scene_id, question_id,
            answers [{answer, answer_confidence, answer_id}], answer_type, question_type,
            position {x, y, z}, rotation {_x, _y, _z, _w} (agent pose in the aligned frame; the
            quaternion turns the +x axis to the agent's heading about z)

Every generated record comes with a ``claim``: a small dict stating what the
text asserts (targets, counts, relation, agent pose), so tests can check it
against the scene with an independent computation. Claims are not part of the
benchmark formats and are not written to the annotation files.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re

import numpy as np

from . import relations as rel
from .layout import Scene, SceneObject
from .objects import SPECS
from .vocab import Category, Colour, OBJECT_CATEGORIES

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


class Relation(enum.Enum):
    """How a referring expression singles out its targets."""

    NONE = "none"
    ON = "on"
    NEXT_TO = "next_to"
    LEFT_OF = "left_of"
    RIGHT_OF = "right_of"
    FARTHEST = "farthest"
    BETWEEN = "between"
    LARGEST = "largest"
    SMALLEST = "smallest"


@dataclasses.dataclass(frozen=True)
class RefExpr:
    """A referring expression: category [+ colour] [+ relation to anchors]."""

    category: Category
    colour: Colour | None = None
    relation: Relation = Relation.NONE
    anchor_ids: tuple[int, ...] = ()
    facing_id: int | None = None   # LEFT_OF/RIGHT_OF: the wall object one faces


def resolve(scene: Scene, e: RefExpr) -> list[int]:
    """Ids of the objects the expression denotes (possibly none)."""
    cands = [o for o in scene.objects if o.category is e.category and (e.colour is None or o.colour is e.colour)]
    A = [scene.objects[i] for i in e.anchor_ids]
    r = e.relation
    if r is Relation.NONE:
        out = cands
    elif r is Relation.ON:
        out = [c for c in cands if rel.is_on(c, A[0])]
    elif r is Relation.NEXT_TO:
        out = [c for c in cands if rel.is_next_to(c, A[0])]
    elif r in (Relation.LEFT_OF, Relation.RIGHT_OF):
        f = rel.wall_facing_xy(scene.objects[e.facing_id])
        test = rel.is_left_of if r is Relation.LEFT_OF else rel.is_right_of
        out = [c for c in cands if test(c, A[0], f)]
    elif r is Relation.FARTHEST:
        best = rel.farthest_from(cands, A[0])
        out = [best] if best is not None else []
    elif r is Relation.BETWEEN:
        out = [c for c in cands if rel.is_between(c, A[0], A[1])]
    else:
        best = rel.extreme_by_size(cands, largest=r is Relation.LARGEST)
        out = [best] if best is not None else []
    return sorted(o.object_id for o in out)


def anchor_phrase(scene: Scene, o: SceneObject) -> str | None:
    """'the lamp' / 'the red chair' if that phrase picks out ``o`` alone, else None."""
    same = scene.by_category(o.category)
    if len(same) == 1:
        return f"the {o.category.value}"
    if sum(s.colour is o.colour for s in same) == 1:
        return f"the {o.colour.value} {o.category.value}"
    return None


def size_word(o: SceneObject) -> str:
    """small / medium / large relative to the category's size range (by volume)."""
    spec = SPECS[o.category]
    lo, hi = np.prod(spec.size_min_m), np.prod(spec.size_max_m)
    t = (np.prod(o.size_m) - lo) / max(hi - lo, 1e-9)
    return "small" if t < 0.33 else "large" if t > 0.66 else "medium-sized"


def tokenize(text: str) -> list[str]:
    """ScanRefer-style tokens: lowercase words and punctuation marks."""
    return re.findall(r"[a-z0-9']+|[.,!?;]", text.lower())


_REFER_TEMPLATES: dict[Relation, tuple[str, ...]] = {
    Relation.NONE: ("this is the {t}.", "there is a {t} in the room.", "the {t} in this room.",
                    "look for the {t}."),
    Relation.ON: ("the {t} is on top of {a}.", "this is a {t} sitting on {a}.", "a {t} placed on {a}.",
                  "the {t} that rests on {a}."),
    Relation.NEXT_TO: ("the {t} next to {a}.", "this {t} is beside {a}.", "a {t} standing near {a}.",
                       "the {t} close to {a}."),
    Relation.LEFT_OF: ("facing {f}, the {t} is to the left of {a}.",
                       "when you face {f}, this is the {t} on the left of {a}.",
                       "if you look towards {f}, the {t} is left of {a}."),
    Relation.RIGHT_OF: ("facing {f}, the {t} is to the right of {a}.",
                        "when you face {f}, this is the {t} on the right of {a}.",
                        "if you look towards {f}, the {t} is right of {a}."),
    Relation.FARTHEST: ("the {t} farthest from {a}.", "of all the {p}, this one is the farthest away from {a}.",
                        "the {t} that is most distant from {a}."),
    Relation.BETWEEN: ("the {t} between {a} and {b}.", "this {t} stands between {a} and {b}.",
                       "a {t} located in between {a} and {b}."),
    Relation.LARGEST: ("the largest {t} in the room.", "this is the biggest {t}.", "the {t} that is the largest."),
    Relation.SMALLEST: ("the smallest {t} in the room.", "this is the tiniest {t}.", "the {t} that is the smallest."),
}
_ATTRIBUTE_SENTENCES = ("it is {c}.", "the {n} is {c} in colour.", "it is a {s} {c} {n}.", "the {n} looks {c}.",
                        "it is a {s} {n}, {c} in colour.")


def describe(scene: Scene, e: RefExpr, rng: np.random.Generator, target: SceneObject | None) -> str:
    """Text of a referring expression, plus an attribute sentence about ``target`` when given."""
    t = (f"{e.colour.value} " if e.colour else "") + e.category.value
    A = [anchor_phrase(scene, scene.objects[i]) for i in e.anchor_ids]
    f = anchor_phrase(scene, scene.objects[e.facing_id]) if e.facing_id is not None else None
    tmpl = _REFER_TEMPLATES[e.relation]
    text = tmpl[rng.integers(len(tmpl))].format(t=t, a=A[0] if A else "", b=A[1] if len(A) > 1 else "", f=f,
                                                p=e.category.plural)
    if target is not None:
        s = _ATTRIBUTE_SENTENCES[rng.integers(len(_ATTRIBUTE_SENTENCES))]
        text += " " + s.format(c=target.colour.value, n=target.category.value, s=size_word(target))
    return text


def candidate_expressions(scene: Scene, target: SceneObject) -> list[RefExpr]:
    """Every expression that denotes exactly ``target``."""
    c, col = target.category, target.colour
    out: list[RefExpr] = []
    anchors = [o for o in scene.objects if o.object_id != target.object_id and anchor_phrase(scene, o)]
    facings = [o for o in scene.objects if o.wall_index is not None
               and o.category in (Category.DOOR, Category.WINDOW) and anchor_phrase(scene, o)]
    exprs = [RefExpr(c), RefExpr(c, col), RefExpr(c, None, Relation.LARGEST), RefExpr(c, None, Relation.SMALLEST)]
    for a in anchors:
        for r in (Relation.ON, Relation.NEXT_TO, Relation.FARTHEST):
            exprs.append(RefExpr(c, None, r, (a.object_id,)))
        for fo in facings:
            if fo.object_id not in (a.object_id, target.object_id):
                exprs.append(RefExpr(c, None, Relation.LEFT_OF, (a.object_id,), fo.object_id))
                exprs.append(RefExpr(c, None, Relation.RIGHT_OF, (a.object_id,), fo.object_id))
    for i, a in enumerate(anchors):
        for b in anchors[i + 1:]:
            exprs.append(RefExpr(c, None, Relation.BETWEEN, (a.object_id, b.object_id)))
    for e in exprs:
        if resolve(scene, e) == [target.object_id]:
            out.append(e)
    return out


def _claim(e: RefExpr, targets: list[int]) -> dict:
    return {"kind": "refer", "category": e.category.value, "colour": e.colour.value if e.colour else None,
            "relation": e.relation.value, "anchor_ids": list(e.anchor_ids), "facing_id": e.facing_id,
            "target_ids": targets}


@dataclasses.dataclass
class Generated:
    """Records (benchmark format) and their claims, index-aligned."""

    records: list[dict] = dataclasses.field(default_factory=list)
    claims: list[dict] = dataclasses.field(default_factory=list)

    def add(self, record: dict, claim: dict) -> None:
        self.records.append(record)
        self.claims.append(claim)


def scanrefer_records(scene: Scene, descriptions_per_object: int = 2) -> Generated:
    """ScanRefer-style descriptions of every object that some expression singles out."""
    rng = np.random.default_rng([scene.seed, 301])
    g = Generated()
    for o in scene.objects:
        exprs = candidate_expressions(scene, o)
        if not exprs:
            continue
        # prefer relational expressions, as ScanRefer descriptions do
        rng.shuffle(exprs)
        exprs.sort(key=lambda e: e.relation is Relation.NONE)
        for k, e in enumerate(exprs[:descriptions_per_object]):
            d = describe(scene, e, rng, o)
            g.add({"scene_id": scene.scene_id, "object_id": str(o.object_id), "object_name": o.category.value,
                   "ann_id": str(k), "description": d, "token": tokenize(d)}, _claim(e, [o.object_id]))
    return g


_M3D_EXTRA = ("There may be several of them.", "", "Find all of them.", "")


def multi3drefer_eval_type(scene: Scene, category: Category, targets: list[int]) -> str:
    """zt/st/mt by number of targets; w_d / wo_d by whether other objects of the class exist."""
    n_class = len(scene.by_category(category))
    if not targets:
        return "zt_w_d" if n_class > 0 else "zt_wo_d"
    if len(targets) == 1:
        return "st_w_d" if n_class > 1 else "st_wo_d"
    return "mt"


def multi3drefer_records(scene: Scene, n_per_scene: int = 10) -> Generated:
    """Descriptions with zero, one or several targets."""
    rng = np.random.default_rng([scene.seed, 302])
    exprs: list[RefExpr] = []
    present = sorted({o.category for o in scene.objects}, key=lambda c: c.value)
    for c in present:
        exprs.append(RefExpr(c))
        for col in Colour:
            exprs.append(RefExpr(c, col))        # present colours → 1+ targets; absent → zero target
        for o in scene.objects:
            if anchor_phrase(scene, o) and o.category is not c:
                for r in (Relation.ON, Relation.NEXT_TO):
                    exprs.append(RefExpr(c, None, r, (o.object_id,)))
    absent = [c for c in OBJECT_CATEGORIES if c not in present]
    for c in absent:
        exprs.append(RefExpr(c, list(Colour)[rng.integers(len(Colour))]))
        exprs.append(RefExpr(c))
    by_type: dict[str, list[tuple[RefExpr, list[int]]]] = {}
    for e in exprs:
        t = resolve(scene, e)
        by_type.setdefault(multi3drefer_eval_type(scene, e.category, t), []).append((e, t))
    g = Generated()
    types = sorted(by_type)
    for k in range(n_per_scene):
        pool = by_type[types[k % len(types)]]
        e, t = pool[rng.integers(len(pool))]
        d = describe(scene, e, rng, None)
        if e.relation is Relation.NONE and e.colour is None:
            d = f"the {e.category.plural} in the room."
        d = (d + " " + _M3D_EXTRA[rng.integers(len(_M3D_EXTRA))].lower()).strip()
        g.add({"scene_id": scene.scene_id, "object_name": e.category.value, "ann_id": str(k), "description": d,
               "object_ids": t, "eval_type": multi3drefer_eval_type(scene, e.category, t)}, _claim(e, t))
    return g


def _np(scene: Scene, o: SceneObject) -> str:
    return anchor_phrase(scene, o) or f"the {o.colour.value} {o.category.value}"


def scanqa_records(scene: Scene, split: str, n_per_scene: int = 12) -> Generated:
    """ScanQA-style questions (colour, count, where, what is on / next to) with several answers."""
    rng = np.random.default_rng([scene.seed, 303])
    # (question, answers, object ids of the answer, object ids the question names, claim)
    cands: list[tuple[str, list[str], list[int], list[int], dict]] = []
    for o in scene.objects:
        a = anchor_phrase(scene, o)
        if a is None:
            continue
        n = o.category.value
        colour_phrase = f"the {n}" if len(scene.by_category(o.category)) == 1 else None
        if colour_phrase is None and o.support_id is not None:
            sup = scene.objects[o.support_id]
            sp = anchor_phrase(scene, sup)
            if sp and sum(x.category is o.category and x.support_id == sup.object_id for x in scene.objects) == 1:
                colour_phrase = f"the {n} on {sp}"
        if colour_phrase is not None:
            q = ("What color is {a}?", "What is the color of {a}?", "What colour is {a} in the room?")
            cands.append((q[rng.integers(3)].format(a=colour_phrase), [o.colour.value, f"{o.colour.value} {n}"],
                          [o.object_id], [o.object_id],
                          {"kind": "colour", "object_id": o.object_id, "answer": o.colour.value}))
        if o.support_id is not None:
            s = scene.objects[o.support_id]
            sn = s.category.value
            q = ("Where is {a} placed?", "Where is {a} located?", "Where can {a} be found?")
            cands.append((q[rng.integers(3)].format(a=a), [f"on {sn}", f"on the {sn}", f"on top of the {sn}",
                                                          f"on {s.colour.value} {sn}"],
                          [o.object_id, s.object_id], [o.object_id],
                          {"kind": "where_on", "object_id": o.object_id,
                                                       "support_id": s.object_id}))
        on_it = [x for x in scene.objects if x.support_id == o.object_id]
        if on_it:
            names = sorted({x.category.value for x in on_it})
            ans = " and ".join(names)
            q = ("What is on {a}?", "What is placed on top of {a}?", "What sits on {a}?")
            cands.append((q[rng.integers(3)].format(a=a), [ans, " and ".join(f"a {n}" for n in names)],
                          [o.object_id] + [x.object_id for x in on_it], [o.object_id],
                          {"kind": "what_on", "support_id": o.object_id, "names": names}))
        near = rel.nearest_object(scene, o)
        if near is not None:
            nn = near.category.value
            q = ("What is next to {a}?", "What is beside {a}?", "What object is closest to {a}?")
            cands.append((q[rng.integers(3)].format(a=a), [nn, f"{near.colour.value} {nn}", f"a {nn}"],
                          [near.object_id], [o.object_id], {"kind": "nearest", "object_id": o.object_id, "nearest_category": nn}))
    for c in sorted({o.category for o in scene.objects}, key=lambda c: c.value):
        objs = scene.by_category(c)
        k = len(objs)
        q = ("How many {p} are in the room?", "How many {p} are there?", "What is the number of {p} in the room?")
        cands.append((q[rng.integers(3)].format(p=c.plural), [str(k), NUMBER_WORDS[k] if k < len(NUMBER_WORDS) else str(k)],
                      [o.object_id for o in objs], [o.object_id for o in objs], {"kind": "count", "category": c.value, "count": k}))
    order = rng.permutation(len(cands))[:n_per_scene]
    g = Generated()
    for j, idx in enumerate(sorted(order)):
        q, answers, ids, subject_ids, claim = cands[idx]
        g.add({"answers": answers, "object_ids": ids, "subject_object_ids": subject_ids,
               "object_names": [scene.objects[i].category.value for i in ids],
               "question": q, "question_id": f"{split}-{scene.scene_id.split('_')[0]}-{j}",
               "scene_id": scene.scene_id}, claim)
    return g


# ---------------------------------------------------------------- SQA3D -----

def sqa3d_question_type(question: str) -> str:
    """SQA3D's question type by first word: what / is / how / can / which / others."""
    first = question.strip().split(" ", 1)[0].lower()
    return first if first in ("what", "is", "how", "can", "which") else "others"


def sector(bearing: float) -> str:
    """front / left / right / back for a bearing in radians (0 ahead, + left)."""
    a = abs(bearing)
    if a <= math.pi / 4:
        return "front"
    if a >= 3 * math.pi / 4:
        return "back"
    return "left" if bearing > 0 else "right"


def yaw_quaternion(yaw_rad: float) -> dict[str, float]:
    """Rotation about z as SQA3D's {_x, _y, _z, _w} dict."""
    return {"_x": 0.0, "_y": 0.0, "_z": math.sin(yaw_rad / 2), "_w": math.cos(yaw_rad / 2)}


_SITUATIONS = {
    "sit": ("I am sitting on {a} facing {f}.", "I am seated on {a}, looking at {f}.",
            "I just sat down on {a} and I am facing {f}."),
    "stand": ("I am standing in front of {a} facing {f}.", "I am standing next to {a}, looking towards {f}.",
              "I stopped by {a} and I am facing {f}."),
}


def _agent_pose(scene: Scene, anchor: SceneObject, facing: SceneObject) -> tuple[np.ndarray, np.ndarray, str]:
    """Position (3,), heading (2,) and posture of an agent at ``anchor`` looking at ``facing``."""
    sittable = anchor.category in (Category.CHAIR, Category.SOFA, Category.BED)
    if sittable:
        p = anchor.center_m.copy()
        p[2] = anchor.box_min_m[2] + 1.1
    else:
        front = np.append(anchor.front_xy, 0.0)
        p = anchor.center_m + front * (anchor.extent_m.max() / 2 + 0.4)
        p[2] = 1.6
    h = facing.center_m[:2] - p[:2]
    return p, h / np.linalg.norm(h), "sit" if sittable else "stand"


def sqa3d_records(scene: Scene, split: str, n_situations: int = 4, base_question_id: int = 0) -> tuple[Generated, Generated]:
    """Situated questions. Returns (question records, annotation records) with shared claims."""
    rng = np.random.default_rng([scene.seed, 304])
    qs, ans = Generated(), Generated()
    anchors = [o for o in scene.objects if anchor_phrase(scene, o) and o.support_id is None
               and o.category not in (Category.WINDOW, Category.DOOR)]
    facings = [o for o in scene.objects if anchor_phrase(scene, o)]
    qid = base_question_id
    for _ in range(n_situations):
        if not anchors or len(facings) < 2:
            break
        a = anchors[rng.integers(len(anchors))]
        f = facings[rng.integers(len(facings))]
        if f.object_id == a.object_id or rel.is_on(f, a):
            continue
        p, h, posture = _agent_pose(scene, a, f)
        if not (abs(p[0]) < scene.room_size_m[0] / 2 and abs(p[1]) < scene.room_size_m[1] / 2):
            continue
        yaw = math.atan2(h[1], h[0])
        temps = _SITUATIONS[posture]
        order = rng.permutation(len(temps))
        texts = [temps[i].format(a=anchor_phrase(scene, a), f=anchor_phrase(scene, f)) for i in order]
        others = [o for o in scene.objects if o.object_id != a.object_id and not rel.is_on(o, a)]
        bearings = {o.object_id: rel.bearing_rad(p[:2], h, o.center_m[:2]) for o in others}
        dist = {o.object_id: float(np.linalg.norm(o.center_m[:2] - p[:2])) for o in others}
        items = _sqa_questions(scene, others, bearings, dist, rng)
        for q, answer, claim in items[:4]:
            claim = {**claim, "position": p.tolist(), "heading_xy": h.tolist(), "anchor_id": a.object_id}
            qs.add({"alternative_situation": texts[1:], "question": q, "question_id": qid,
                    "scene_id": scene.scene_id, "situation": texts[0]}, claim)
            record = {"answer_type": "other", "answers": [{"answer": answer, "answer_confidence": "yes",
                                                           "answer_id": 1}],
                      "position": {"x": float(p[0]), "y": float(p[1]), "z": float(p[2])},
                      "question_id": qid, "question_type": "N/A", "rotation": yaw_quaternion(yaw),
                      "scene_id": scene.scene_id}
            if "object_id" in claim:  # our addition (the published files have no such key):
                record["object_ids"] = [claim["object_id"]]  # the object the question names
            ans.add(record, claim)
            qid += 1
    return qs, ans


def _sqa_questions(scene: Scene, others: list[SceneObject], bearings: dict[int, float], dist: dict[int, float],
                   rng: np.random.Generator) -> list[tuple[str, str, dict]]:
    out: list[tuple[str, str, dict]] = []
    by_sector: dict[str, list[SceneObject]] = {}
    for o in others:
        by_sector.setdefault(sector(bearings[o.object_id]), []).append(o)
    side_words = {"left": "on my left", "right": "on my right", "back": "behind me", "front": "in front of me"}
    for s, objs in by_sector.items():
        objs = sorted(objs, key=lambda o: dist[o.object_id])
        if len(objs) == 1 or dist[objs[1].object_id] - dist[objs[0].object_id] > 0.4 \
                or objs[1].category is objs[0].category:
            q = ("What is the closest object {w}?", "What is nearest to me {w}?", "Which object is closest {w}?")
            out.append((q[rng.integers(3)].format(w=side_words[s]), objs[0].category.value,
                        {"kind": "closest_in_sector", "sector": s, "category": objs[0].category.value,
                         "object_id": objs[0].object_id}))
    for o in others:
        ap = anchor_phrase(scene, o)
        s = sector(bearings[o.object_id])
        if ap is None or abs(abs(bearings[o.object_id]) - math.pi / 4) < 0.15 \
                or abs(abs(bearings[o.object_id]) - 3 * math.pi / 4) < 0.15:
            continue  # too close to a sector boundary to be unambiguous
        if s in ("left", "right"):
            out.append((f"Is {ap} on my left or on my right?", s, {"kind": "side", "object_id": o.object_id,
                                                                    "sector": s}))
        turn = {"front": "forward", "back": "backward", "left": "left", "right": "right"}[s]
        out.append((f"Which direction should I go to reach {ap}?", turn,
                    {"kind": "turn", "object_id": o.object_id, "sector": s}))
        can = "yes" if abs(bearings[o.object_id]) < math.pi / 2 - 0.15 else \
            "no" if abs(bearings[o.object_id]) > math.pi / 2 + 0.15 else None
        if can:
            out.append((f"Can I see {ap} without turning around?", can,
                        {"kind": "can_see", "object_id": o.object_id, "answer": can}))
        if sum(x.category is o.category and sector(bearings[x.object_id]) == s for x in others) == 1:
            out.append((f"What color is the {o.category.value} {side_words[s]}?", o.colour.value,
                        {"kind": "colour", "object_id": o.object_id, "sector": s}))
    for c in sorted({o.category for o in others}, key=lambda c: c.value):
        n_front = sum(1 for o in others if o.category is c and sector(bearings[o.object_id]) == "front")
        if all(abs(abs(bearings[o.object_id]) - math.pi / 4) > 0.15 for o in others if o.category is c):
            out.append((f"How many {c.plural} are in front of me?", NUMBER_WORDS[min(n_front, 10)],
                        {"kind": "count_front", "category": c.value, "count": n_front}))
    perm = rng.permutation(len(out))
    return [out[i] for i in perm]


def all_records(scene: Scene, split: str, sqa_base_question_id: int = 0) -> dict[str, Generated]:
    """Every benchmark's records for one scene, keyed scanrefer / multi3drefer / scanqa / sqa3d_questions /
    sqa3d_annotations."""
    q, a = sqa3d_records(scene, split, base_question_id=sqa_base_question_id)
    return {"scanrefer": scanrefer_records(scene), "multi3drefer": multi3drefer_records(scene),
            "scanqa": scanqa_records(scene, split), "sqa3d_questions": q, "sqa3d_annotations": a}
