"""`rvs people`: the people the query service found (ListPeople), one person's photos and segments
(GetPerson), and the edits: name, merge, move faces or tracks (split, "this is <name>")."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from rvs.cli.clients import Rpc, calling, json_text, print_hits
from rvs.v1 import rvs_pb2 as pb

# action -> (what its positional arguments are, how many at least, how many at most; None: any)
_ARGS = {
    "list": ("", 0, 0),
    "show": ("PERSON", 1, 1),
    "name": ("PERSON NAME", 2, 2),
    "merge": ("INTO PERSON...", 2, None),
    "move": ("UNIT... --to PERSON | --name NAME", 1, None),
}


def run(args: argparse.Namespace) -> int:
    usage, least, most = _ARGS[args.action]
    if not least <= len(args.args) <= (most if most is not None else len(args.args)):
        print(f"rvs people {args.action}: give {usage or 'no arguments'}", file=sys.stderr)
        return 2
    if args.action == "move" and args.to and args.name:
        print("rvs people move: give --to or --name, not both (neither: a new person)", file=sys.stderr)
        return 2
    return calling("people", args, _actions(args)[args.action])


def _actions(args: argparse.Namespace) -> dict[str, Callable[[Rpc], None]]:
    def show_person(person: pb.Person) -> None:
        print(json_text(person) if args.json else _line(person))

    def list_people(rpc: Rpc) -> None:
        token, shown = "", []
        while True:
            page = rpc.list_people(pb.ListPeopleRequest(page_size=500, page_token=token, named_only=args.named))
            shown.extend(page.people)
            token = page.next_page_token
            if not token:
                break
        if args.json:
            print(json_text(pb.ListPeopleResponse(people=shown, total=page.total, unclustered=page.unclustered)))
            return
        print(f"{len(shown)} people; {page.unclustered} photo face(s) and track(s) clustered into nobody")
        for person in shown:
            print(_line(person))

    def show(rpc: Rpc) -> None:
        got = rpc.get_person(pb.GetPersonRequest(person_id=args.args[0]))
        if args.json:
            print(json_text(got))
            return
        print(_line(got.person))
        print_hits(got.answer)

    def name(rpc: Rpc) -> None:
        show_person(rpc.update_person(pb.UpdatePersonRequest(person_id=args.args[0], name=args.args[1])))

    def merge(rpc: Rpc) -> None:
        show_person(rpc.merge_people(pb.MergePeopleRequest(into=args.args[0], people=args.args[1:])))

    def move(rpc: Rpc) -> None:
        request = pb.MoveToPersonRequest(unit_ids=args.args)
        if args.to:
            request.person_id = args.to
        elif args.name:
            request.name = args.name
        show_person(rpc.move_to_person(request))

    return {"list": list_people, "show": show, "name": name, "merge": merge, "move": move}


def _line(person: pb.Person) -> str:
    return (
        f"{person.person_id}  {person.name or '(unnamed)'}: {person.faces} face(s) in {person.media_count} "
        f"photo(s)/video(s), {person.units} unit(s)"
    )
