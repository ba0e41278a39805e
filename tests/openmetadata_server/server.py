"""An OpenMetadata test server for exactly the endpoints the catalog sync uses, written from OpenMetadata's
public API documentation and JSON schemas (openmetadata-spec), independent of our client's models.

What it holds to, as OpenMetadata does:
* every call needs ``Authorization: Bearer <the bot's token>`` (401 otherwise);
* create requests are validated as their schemas say (required fields, ``additionalProperties: false``,
  the column ``dataType`` enum, entityName length): 400 with ``{"code", "message"}``;
* ``PUT`` is create-or-update by name: 201 when created, 200 when updated; the entity's version moves by
  0.1 only when something changed; a bot's PUT never overwrites a non-empty description (table or column);
  tags on the entity and its columns (set by people here, through ``curate``) survive a PUT;
* parents must exist: a database's service, a schema's database, a table's schema (404 naming the FQN);
  owners must be existing users (404); lineage ends must be existing entities (404);
* ``GET .../name/{fqn}`` answers 404 for an unknown name; ``?fields=`` decides which of columns, owners
  and tags the answer holds;
* lineage edges are kept once per (from, to); a PUT replaces the edge's details.

Run in a thread with ``OpenMetadataTestServer()`` (real HTTP on 127.0.0.1, a free port).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# entity/data/table.json#/definitions/dataType (the values this project's types map to, and more)
DataType = Literal[
    "NUMBER", "TINYINT", "SMALLINT", "INT", "BIGINT", "BYTEINT", "BYTES", "FLOAT", "DOUBLE", "DECIMAL", "NUMERIC",
    "TIMESTAMP", "TIMESTAMPZ", "TIME", "DATE", "DATETIME", "INTERVAL", "STRING", "MEDIUMTEXT", "TEXT", "CHAR",
    "LONG", "VARCHAR", "BOOLEAN", "BINARY", "VARBINARY", "ARRAY", "BLOB", "LONGBLOB", "MEDIUMBLOB", "MAP",
    "STRUCT", "UNION", "SET", "GEOGRAPHY", "ENUM", "JSON", "UUID", "VARIANT", "GEOMETRY", "BYTEA", "AGGREGATEFUNCTION",
    "ERROR", "FIXED", "RECORD", "NULL", "SUPER", "HLLSKETCH", "PG_LSN", "PG_SNAPSHOT", "TSQUERY", "TXID_SNAPSHOT",
    "XML", "MACADDR", "TSVECTOR", "UNKNOWN", "CIDR", "INET", "CLOB", "ROWID", "LOWCARDINALITY", "YEAR", "POINT",
    "POLYGON", "TUPLE", "SPATIAL", "TABLE", "NTEXT", "IMAGE", "IPV4", "IPV6", "DATETIMERANGE", "HLL",
    "LARGEINT", "QUANTILE_STATE", "AGG_STATE", "BITMAP", "UINT", "BIT", "MONEY",
]  # fmt: skip


def _entity_name(value: str) -> str:
    if "::" in value:  # basic.json#/definitions/entityName: pattern ^((?!::).)*$
        raise ValueError('must match "^((?!::).)*$"')
    return value


EntityName = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_entity_name)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EntityReferenceIn(Strict):
    id: uuid.UUID
    type: str
    name: str | None = None
    fullyQualifiedName: str | None = None  # noqa: N815
    displayName: str | None = None  # noqa: N815
    description: str | None = None
    deleted: bool | None = None
    inherited: bool | None = None
    href: str | None = None


class ColumnIn(Strict):
    name: str = Field(min_length=1, max_length=256)
    dataType: DataType  # noqa: N815
    dataTypeDisplay: str | None = None  # noqa: N815
    dataLength: int | None = None  # noqa: N815
    description: str | None = None
    ordinalPosition: int | None = None  # noqa: N815


class CreateDatabaseIn(Strict):
    name: EntityName
    service: str
    displayName: str | None = None  # noqa: N815
    description: str | None = None


class CreateDatabaseSchemaIn(Strict):
    name: EntityName
    database: str
    displayName: str | None = None  # noqa: N815
    description: str | None = None


class CreateTableIn(Strict):
    name: EntityName
    databaseSchema: str  # noqa: N815
    columns: list[ColumnIn]
    displayName: str | None = None  # noqa: N815
    description: str | None = None
    tableType: str | None = None  # noqa: N815
    owners: list[EntityReferenceIn] | None = None


class ColumnLineageIn(Strict):
    fromColumns: list[str] | None = None  # noqa: N815
    toColumn: str | None = None  # noqa: N815
    function: str | None = None


class LineageDetailsIn(Strict):
    sqlQuery: str | None = None  # noqa: N815
    columnsLineage: list[ColumnLineageIn] | None = None  # noqa: N815
    pipeline: EntityReferenceIn | None = None
    description: str | None = None
    source: Literal[
        "Manual", "ViewLineage", "QueryLineage", "PipelineLineage", "DashboardLineage", "DbtLineage",
        "SparkLineage", "OpenLineage", "ExternalTableLineage", "CrossDatabaseLineage", "ChildAssets",
    ] | None = None  # fmt: skip


class EntitiesEdgeIn(Strict):
    fromEntity: EntityReferenceIn  # noqa: N815
    toEntity: EntityReferenceIn  # noqa: N815
    description: str | None = None
    lineageDetails: LineageDetailsIn | None = None  # noqa: N815


class AddLineageIn(Strict):
    edge: EntitiesEdgeIn


class OpenMetadataProblem(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Store:
    """The server's entities by FQN, its users by name, and lineage edges by (from id, to id)."""

    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    databases: dict[str, dict[str, Any]] = field(default_factory=dict)
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    lineage: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    writes: list[str] = field(default_factory=list)  # "PUT /path" of every write, in order

    def by_id(self, entity_id: str) -> dict[str, Any] | None:
        for kind in (self.tables, self.databases, self.schemas, self.services):
            for entity in kind.values():
                if entity["id"] == entity_id:
                    return entity
        return None


def _entity(name: str, fqn: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "name": name, "fullyQualifiedName": fqn, "entityType": kind, "version": 0.1,
            "updatedAt": int(time.time() * 1000), "updatedBy": "lakehouse-bot", "deleted": False, **fields}  # fmt: skip


def _bump(entity: dict[str, Any], changed: bool) -> None:
    if changed:
        entity["version"] = round(entity["version"] + 0.1, 1)
        entity["updatedAt"] = int(time.time() * 1000)


def _kept_description(old: str | None, new: str | None) -> str | None:
    """A bot's PUT never overwrites a description someone wrote (OpenMetadata's EntityUpdater rule)."""
    return old if old else new


def build_app(store: Store, token: str) -> FastAPI:
    app = FastAPI()

    @app.exception_handler(OpenMetadataProblem)
    async def problem(_: Request, exc: OpenMetadataProblem) -> JSONResponse:
        return JSONResponse({"code": exc.code, "message": exc.message}, status_code=exc.code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:])
        return JSONResponse({"code": 400, "message": f"[{where} {first['msg']}]"}, status_code=400)

    @app.middleware("http")
    async def bearer(request: Request, call_next: Any) -> Any:
        if request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"code": 401, "message": "Not authorized; User's Email is not present"}, 401)
        return await call_next(request)

    def found(kind: dict[str, dict[str, Any]], fqn: str, what: str) -> dict[str, Any]:
        if fqn not in kind:
            raise OpenMetadataProblem(404, f"{what} instance for {fqn} not found")
        return kind[fqn]

    def put(kind: dict[str, dict[str, Any]], fqn: str, create: dict[str, Any], update: Any) -> JSONResponse:
        store.writes.append(fqn)
        if fqn not in kind:
            kind[fqn] = create
            return JSONResponse(create, status_code=201)
        entity = kind[fqn]
        _bump(entity, update(entity))
        return JSONResponse(entity, status_code=200)

    @app.get("/api/v1/services/databaseServices/name/{fqn}")
    async def get_service(fqn: str) -> dict[str, Any]:
        return found(store.services, fqn, "databaseService")

    @app.put("/api/v1/databases")
    async def put_database(body: CreateDatabaseIn) -> JSONResponse:
        service = found(store.services, body.service, "databaseService")
        fqn = f"{body.service}.{body.name}"

        def update(entity: dict[str, Any]) -> bool:
            new = _kept_description(entity.get("description"), body.description)
            changed = new != entity.get("description")
            entity["description"] = new
            return changed

        create = _entity(body.name, fqn, "database", description=body.description,
                         service={"id": service["id"], "type": "databaseService", "name": body.service})  # fmt: skip
        return put(store.databases, fqn, create, update)

    @app.put("/api/v1/databaseSchemas")
    async def put_schema(body: CreateDatabaseSchemaIn) -> JSONResponse:
        database = found(store.databases, body.database, "database")
        fqn = f"{body.database}.{body.name}"
        create = _entity(body.name, fqn, "databaseSchema", description=body.description,
                         database={"id": database["id"], "type": "database"})  # fmt: skip
        return put(store.schemas, fqn, create, lambda entity: False)

    def owners_of(refs: list[EntityReferenceIn] | None) -> list[dict[str, Any]]:
        out = []
        for ref in refs or []:
            user = next((u for u in store.users.values() if u["id"] == str(ref.id)), None)
            if ref.type != "user" or user is None:
                raise OpenMetadataProblem(404, f"{ref.type} instance for {ref.id} not found")
            out.append({"id": user["id"], "type": "user", "name": user["name"],
                        "fullyQualifiedName": user["name"], "displayName": user.get("displayName")})  # fmt: skip
        return out

    @app.put("/api/v1/tables")
    async def put_table(body: CreateTableIn) -> JSONResponse:
        schema = found(store.schemas, body.databaseSchema, "databaseSchema")
        fqn = f"{body.databaseSchema}.{body.name}"
        owners = owners_of(body.owners)
        columns = [
            {**c.model_dump(exclude_none=True), "fullyQualifiedName": f"{fqn}.{c.name}", "tags": []}
            for c in body.columns
        ]

        def update(entity: dict[str, Any]) -> bool:
            before = repr((entity["columns"], entity.get("description"), entity["owners"]))
            old_columns = {c["name"]: c for c in entity["columns"]}
            for column in columns:
                old = old_columns.get(column["name"], {})
                column["tags"] = old.get("tags", [])
                description = _kept_description(old.get("description"), column.get("description"))
                if description is not None:
                    column["description"] = description
            entity["columns"] = columns
            entity["description"] = _kept_description(entity.get("description"), body.description)
            if body.owners is not None:
                entity["owners"] = owners
            return repr((entity["columns"], entity.get("description"), entity["owners"])) != before

        create = _entity(body.name, fqn, "table", description=body.description, columns=columns, owners=owners,
                         tags=[], tableType=body.tableType or "Regular",
                         databaseSchema={"id": schema["id"], "type": "databaseSchema"})  # fmt: skip
        return put(store.tables, fqn, create, update)

    @app.get("/api/v1/tables/name/{fqn}")
    async def get_table(fqn: str, fields: str = "") -> dict[str, Any]:
        table = found(store.tables, fqn, "table")
        wanted = {f.strip() for f in fields.split(",") if f.strip()}
        unknown = wanted - {"columns", "owners", "tags", "followers", "joins", "usageSummary", "domain"}
        if unknown:
            raise OpenMetadataProblem(400, f"Invalid field name {sorted(unknown)[0]}")
        hidden = {"columns", "owners", "tags"} - wanted
        return {k: v for k, v in table.items() if k not in hidden}

    @app.get("/api/v1/users/name/{name}")
    async def get_user(name: str) -> dict[str, Any]:
        return found(store.users, name, "user")

    @app.put("/api/v1/lineage")
    async def add_lineage(body: AddLineageIn) -> JSONResponse:
        ends = []
        for ref in (body.edge.fromEntity, body.edge.toEntity):
            entity = store.by_id(str(ref.id))
            if entity is None or entity["entityType"] != ref.type:
                raise OpenMetadataProblem(404, f"{ref.type} instance for {ref.id} not found")
            ends.append(entity)
        details = body.edge.lineageDetails.model_dump(exclude_none=True) if body.edge.lineageDetails else {}
        for pair in details.get("columnsLineage", []):
            for column in [*pair.get("fromColumns", []), pair.get("toColumn")]:
                if column and not any(column == c["fullyQualifiedName"] for e in ends for c in e.get("columns", [])):
                    raise OpenMetadataProblem(400, f"Invalid column name {column}")
        store.writes.append(f"lineage {ends[0]['fullyQualifiedName']} -> {ends[1]['fullyQualifiedName']}")
        store.lineage[(ends[0]["id"], ends[1]["id"])] = details
        return JSONResponse(None, status_code=200)

    @app.get("/api/v1/lineage/table/name/{fqn}")
    async def get_lineage(fqn: str, upstreamDepth: int = 1, downstreamDepth: int = 1) -> dict[str, Any]:  # noqa: N803
        table = found(store.tables, fqn, "table")

        def edges(side: int, depth: int) -> list[dict[str, Any]]:
            if depth < 1:
                return []
            return [{"fromEntity": f, "toEntity": t, "lineageDetails": d}
                    for (f, t), d in store.lineage.items() if (f, t)[side] == table["id"]]  # fmt: skip

        upstream, downstream = edges(1, upstreamDepth), edges(0, downstreamDepth)
        ids = {e["fromEntity"] for e in upstream} | {e["toEntity"] for e in downstream}
        nodes = [store.by_id(i) for i in ids]
        return {"entity": {"id": table["id"], "type": "table", "fullyQualifiedName": fqn},
                "nodes": [n for n in nodes if n], "upstreamEdges": upstream, "downstreamEdges": downstream}  # fmt: skip

    return app


class OpenMetadataTestServer:
    """The test server on a free port in a thread; ``store`` is its state, ``curate`` plays a person in the UI."""

    def __init__(self, token: str = "om-bot-token-1") -> None:
        self.token = token
        self.store = Store()
        config = uvicorn.Config(build_app(self.store, token), host="127.0.0.1", port=0, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the OpenMetadata test server did not start")
            time.sleep(0.02)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def add_service(self, name: str) -> None:
        self.store.services[name] = _entity(name, name, "databaseService", serviceType="CustomDatabase")

    def add_user(self, name: str, email: str) -> dict[str, Any]:
        self.store.users[name] = _entity(name, name, "user", email=email)
        return self.store.users[name]

    def curate(self, fqn: str, **changes: Any) -> None:
        """What a person does in OpenMetadata's UI: set description, owners (user names), tags, glossary
        terms (FQNs), or a column's description (``column_descriptions={name: text}``)."""
        table = self.store.tables[fqn]
        if "description" in changes:
            table["description"] = changes["description"]
        if "owners" in changes:
            table["owners"] = [
                {"id": self.store.users[n]["id"], "type": "user", "name": n, "fullyQualifiedName": n}
                for n in changes["owners"]
            ]
        labels = [{"tagFQN": t, "source": "Classification", "labelType": "Manual", "state": "Confirmed"}
                  for t in changes.get("tags", [])]  # fmt: skip
        labels += [{"tagFQN": t, "source": "Glossary", "labelType": "Manual", "state": "Confirmed"}
                   for t in changes.get("glossary_terms", [])]  # fmt: skip
        if labels:
            table["tags"] = labels
        for column in table["columns"]:
            if column["name"] in changes.get("column_descriptions", {}):
                column["description"] = changes["column_descriptions"][column["name"]]
        _bump(table, True)

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
