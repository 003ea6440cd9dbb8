"""ImageService.List: folder scoping, pageSize, keyset pagination in every order, page-token
binding and tamper-proofing, the filter grammar and orderBy."""

import datetime as dt
from typing import Any

import msgspec

from store import images
from store.db import Database
from tests.gateway.conftest import FOLDER, OTHER_FOLDER, Api

ORDERS = [
    "id",
    "id asc",
    "id desc",
    "name",
    "name asc",
    "name desc",
    "createdAt",
    "createdAt asc",
    "createdAt desc",
]
BASE_US = 1_900_000_000_000_000
# Nine images: names out of id order, two unnamed (a name tie), createdAt out of id order
# with ties, so that every order needs its tie-breaker.
SEED = [
    ("kilo", 5),
    ("", 3),
    ("alpha", 5),
    ("zulu", 1),
    ("", 8),
    ("mike", 3),
    ("bravo", 0),
    ("yankee", 8),
    ("a_1", 2),
]


async def _seed(api: Api, db: Database, folder: str = FOLDER) -> list[dict[str, Any]]:
    """SEED's images in `folder` with the given createdAt offsets; their Image JSON."""
    created = []
    for name, offset in SEED:
        image_id = (
            await api.new_image(name=name, folderId=folder)
            if name
            else (await api.new_image(folderId=folder))
        )
        async with db.transaction() as conn:
            record = await images.get(conn, image_id)
            assert record is not None
            moved = msgspec.structs.replace(record, created_at=BASE_US + offset)
            await images.replace_many(conn, [moved])
        created.append(await api.image(image_id))
    return created


def _expected(seeded: list[dict[str, Any]], order: str) -> list[str]:
    field, *direction = order.split()
    key = {
        "id": lambda i: (i["id"],),
        "name": lambda i: (i.get("name", ""), i["id"]),
        "createdAt": lambda i: (dt.datetime.fromisoformat(i["createdAt"]), i["id"]),
    }[field]
    ordered = sorted(seeded, key=key, reverse=direction == ["desc"])
    return [image["id"] for image in ordered]


async def _walk(api: Api, page_size: int, **params: Any) -> tuple[list[str], list[str]]:
    """Every page of a listing: the ids in order, and the tokens handed out."""
    ids: list[str] = []
    tokens: list[str] = []
    reply = await api.list(pageSize=page_size, **params)
    while True:
        assert reply.status == 200, reply.body
        page = reply.json
        ids += [image["id"] for image in page.get("images", [])]
        assert len(page.get("images", [])) <= page_size
        if "nextPageToken" not in page:
            return ids, tokens
        assert page["nextPageToken"], "an empty nextPageToken must be left out"
        tokens.append(page["nextPageToken"])
        reply = await api.list(pageSize=page_size, pageToken=page["nextPageToken"], **params)


async def test_list_answers_only_the_folders_images(api: Api) -> None:
    mine = [await api.new_image(name=f"mine-{n}") for n in range(3)]
    await api.new_image(folderId=OTHER_FOLDER, name="theirs")

    reply = await api.list()
    empty = await api.list(folderId="folder-empty")

    assert reply.status == 200
    assert [image["id"] for image in reply.json["images"]] == sorted(mine)
    assert "nextPageToken" not in reply.json
    assert empty.status == 200 and empty.json.get("images", []) == []


async def test_pagination_walks_every_image_once_in_every_order(api: Api, db: Database) -> None:
    seeded = await _seed(api, db)
    await _seed(api, db, OTHER_FOLDER)

    for order in ORDERS:
        ids, tokens = await _walk(api, 2, orderBy=order)

        assert ids == _expected(seeded, order), order
        assert len(tokens) == 4, order  # 9 images, pages of 2: the fifth page is the last


async def test_pagination_is_stable_when_images_are_inserted_between_pages(
    api: Api, db: Database
) -> None:
    seeded = await _seed(api, db)
    names = iter(f"{prefix}-{n}" for n in range(100) for prefix in ("aaa", "mmm", "zzz"))

    for order in ORDERS:
        seen: list[str] = []
        reply = await api.list(pageSize=2, orderBy=order)
        for page in range(100):
            seen += [image["id"] for image in reply.json.get("images", [])]
            token = reply.json.get("nextPageToken")
            if not token:
                break
            if page < 4:  # new images that sort before, among and after the rest
                for _ in range(2):
                    await api.new_image(name=next(names))
            reply = await api.list(pageSize=2, orderBy=order, pageToken=token)
            assert reply.status == 200, reply.body

        assert len(seen) == len(set(seen)), f"{order}: an image was listed twice"
        original = set(_expected(seeded, order))
        assert original <= set(seen), f"{order}: an image was skipped"
        assert [i for i in seen if i in original] == _expected(seeded, order), order


async def test_page_size_defaults_to_100_and_stops_at_1000(api: Api) -> None:
    for n in range(101):
        await api.new_image(name=f"img-{n:03}")

    default = await api.list()
    zero = await api.list(pageSize=0)
    most = await api.list(pageSize=1000)
    rest = await api.list(pageToken=default.json["nextPageToken"])

    assert len(default.json["images"]) == len(zero.json["images"]) == 100
    assert "nextPageToken" in default.json and "nextPageToken" in zero.json
    assert len(most.json["images"]) == 101 and "nextPageToken" not in most.json
    assert len(rest.json["images"]) == 1 and "nextPageToken" not in rest.json
    for bad in (1001, -1, "ten", 2**63):
        reply = await api.list(pageSize=bad)
        assert (reply.status, reply.code) == (400, 3), (bad, reply.body)
        assert "pageSize" in reply.message


async def test_an_exact_last_page_has_no_token(api: Api) -> None:
    for n in range(4):
        await api.new_image(name=f"n{n}")

    ids, tokens = await _walk(api, 2)

    assert len(ids) == 4 and len(tokens) == 1


async def test_folder_id_is_required(api: Api) -> None:
    missing = await api.call("GET", "/compute/v1/images")
    empty = await api.call("GET", "/compute/v1/images", params={"folderId": ""})
    overlong = await api.list(folderId="f" * 51)

    for reply in (missing, empty, overlong):
        assert (reply.status, reply.code) == (400, 3), reply.body
        assert "folderId" in reply.message


async def test_query_parameters_in_proto_names_and_repeats(api: Api) -> None:
    image_id = await api.new_image()
    snake = await api.call("GET", "/compute/v1/images", params={"folder_id": FOLDER})
    repeated = await api.call("GET", f"/compute/v1/images?folderId={FOLDER}&folderId=x")
    unknown = await api.list(color="red")

    assert [image["id"] for image in snake.json["images"]] == [image_id]
    assert (repeated.status, repeated.code) == (400, 3)
    assert (unknown.status, unknown.code) == (400, 3) and "color" in unknown.message


async def _first_token(api: Api, **params: Any) -> str:
    reply = await api.list(pageSize=1, **params)
    assert reply.status == 200, reply.body
    return str(reply.json["nextPageToken"])


async def test_a_page_token_only_works_for_the_query_that_issued_it(api: Api) -> None:
    for name in ("one", "two", "three"):
        await api.new_image(name=name)
        await api.new_image(name=name, folderId=OTHER_FOLDER)
    token = await _first_token(api, orderBy="name", filter='name != "x"')
    same = {"orderBy": "name", "filter": 'name != "x"'}

    assert (await api.list(pageSize=1, pageToken=token, **same)).status == 200
    misuses = [
        {**same, "folderId": OTHER_FOLDER},
        {**same, "filter": 'name != "y"'},
        {"orderBy": "name"},
        {**same, "orderBy": "name desc"},
        {**same, "orderBy": "createdAt"},
        {"filter": 'name != "x"'},
    ]
    for params in misuses:
        reply = await api.list(pageSize=1, pageToken=token, **params)
        assert (reply.status, reply.code) == (400, 3), (params, reply.body)
        assert "pageToken" in reply.message


async def test_a_tampered_page_token_is_refused(api: Api) -> None:
    for name in ("one", "two", "three"):
        await api.new_image(name=name)

    for params in ({}, {"orderBy": "createdAt"}, {"orderBy": "name"}):
        token = await _first_token(api, **params)
        flipped = [
            token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
            for i in (0, len(token) // 2, len(token) - 1)
        ]
        for bad in [*flipped, token[:-1], token + "x", "x" + token, "garbage", "=" * 20]:
            reply = await api.list(pageSize=1, pageToken=bad, **params)
            assert (reply.status, reply.code) == (400, 3), (params, bad, reply.body)
    overlong = await api.list(pageToken="a" * 101)
    assert (overlong.status, overlong.code) == (400, 3) and "pageToken" in overlong.message


async def test_page_tokens_stay_within_100_characters(api: Api) -> None:
    for letter in "abc":
        await api.new_image(name=letter + "z" * 61 + "9")  # 63 characters

    for order in ("name", "name desc", "createdAt desc", "id"):
        token = await _first_token(api, orderBy=order, filter='name != "' + "q" * 63 + '"')

        assert len(token) <= 100, (order, token)
        follow = await api.list(
            pageSize=1, pageToken=token, orderBy=order, filter='name != "' + "q" * 63 + '"'
        )
        assert follow.status == 200, follow.body


async def _names(api: Api, text: str) -> list[str]:
    reply = await api.list(filter=text, orderBy="name")
    assert reply.status == 200, (text, reply.body)
    return [image.get("name", "") for image in reply.json.get("images", [])]


async def test_filter_by_name(api: Api) -> None:
    for name in ("alpha", "beta", "gamma", "delta"):
        await api.new_image(name=name)
    await api.new_image()  # unnamed
    await api.new_image(name="alpha", folderId=OTHER_FOLDER)

    assert await _names(api, 'name = "alpha"') == ["alpha"]
    assert await _names(api, "name = 'beta'") == ["beta"]
    assert await _names(api, 'name="gamma"') == ["gamma"]
    assert await _names(api, 'name = "nobody"') == []
    assert await _names(api, "name != 'alpha'") == ["", "beta", "delta", "gamma"]
    assert await _names(api, 'name IN ("alpha", "delta")') == ["alpha", "delta"]
    assert await _names(api, "name IN ('beta')") == ["beta"]
    assert await _names(api, 'name NOT IN ("alpha", "delta")') == ["", "beta", "gamma"]
    assert await _names(api, 'name != "alpha" AND name != "beta"') == ["", "delta", "gamma"]
    assert await _names(api, 'name IN ("alpha","beta") AND name != "beta"') == ["alpha"]
    assert await _names(api, 'name = "a\\"b"') == []
    assert await _names(api, "name = 'it\\'s'") == []
    assert await _names(api, "") == ["", "alpha", "beta", "delta", "gamma"]
    assert await _names(api, 'status = "CREATING" AND name IN ("beta")') == ["beta"]


async def test_filter_works_with_pagination(api: Api) -> None:
    for n in range(7):
        await api.new_image(name=f"keep-{n}")
        await api.new_image(name=f"drop-{n}")
    keep = ", ".join(f'"keep-{n}"' for n in range(7))

    ids, tokens = await _walk(api, 2, filter=f"name IN ({keep})", orderBy="name desc")

    names = [(await api.image(image_id))["name"] for image_id in ids]
    assert names == [f"keep-{n}" for n in reversed(range(7))]
    assert len(tokens) == 3


async def test_bad_filters_are_refused(api: Api) -> None:
    bad = [
        'size = "1"',
        'folderId = "x"',
        'labels.env = "x"',
        "name = ",
        'name ~ "a"',
        'name > "a"',
        'name = "a" OR name = "b"',
        'name = "a" name = "b"',
        'name = "a" AND',
        'name IN "a"',
        "name IN ()",
        'name IN ("a", )',
        'name IN ("a"',
        'name NOT "a"',
        'name = "unterminated',
        '(name = "a")',
        '= "a"',
        'name = "a" ;',
        "x" * 1001,
    ]
    for text in bad:
        reply = await api.list(filter=text)
        assert (reply.status, reply.code) == (400, 3), (text, reply.body)
        assert "filter" in reply.message, (text, reply.message)


async def test_bad_order_by_is_refused(api: Api) -> None:
    for text in ("size", "name sideways", "name asc desc", "created_at", "-name", "x" * 101):
        reply = await api.list(orderBy=text)
        assert (reply.status, reply.code) == (400, 3), (text, reply.body)
        assert "orderBy" in reply.message
