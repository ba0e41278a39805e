"""An httpx client of OpenMetadata's REST API (``/api/v1``) for exactly the endpoints the catalog sync uses.

Models are written from OpenMetadata's published JSON schemas (openmetadata-spec: api/data/createTable,
createDatabase, createDatabaseSchema, api/lineage/addLineage, type/entityReference, type/tagLabel,
entity/data/table's column) and hold only the fields we send or read: requests forbid other fields, as
the schemas' ``additionalProperties: false`` does; responses ignore the many fields we do not read.
Authentication is a bot's JWT (``Authorization: Bearer``). A 404 on a read is ``None``; other refusals
raise OpenMetadataError with OpenMetadata's own message.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field

ModelT = TypeVar("ModelT", bound=BaseModel)


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Reply(BaseModel):
    model_config = ConfigDict(extra="ignore")


# type/entityReference.json (id and type required)
class EntityReference(Request):
    id: uuid.UUID
    type: str
    name: str | None = None
    fullyQualifiedName: str | None = None  # noqa: N815 (OpenMetadata's field names)
    displayName: str | None = None  # noqa: N815


class EntityReferenceReply(Reply):
    id: uuid.UUID
    type: str
    name: str | None = None
    fullyQualifiedName: str | None = None  # noqa: N815
    displayName: str | None = None  # noqa: N815


# type/tagLabel.json
class TagLabel(Reply):
    tagFQN: str  # noqa: N815
    source: Literal["Classification", "Glossary"]
    labelType: str = "Manual"  # noqa: N815
    state: str = "Confirmed"


# entity/data/table.json#/definitions/column (name and dataType required)
class Column(Request):
    name: str = Field(min_length=1, max_length=256)
    dataType: str  # noqa: N815
    dataTypeDisplay: str | None = None  # noqa: N815
    description: str | None = None


class ColumnReply(Reply):
    name: str
    dataType: str  # noqa: N815
    dataTypeDisplay: str | None = None  # noqa: N815
    description: str | None = None
    tags: list[TagLabel] = Field(default_factory=list)


class CreateDatabase(Request):
    name: str = Field(min_length=1, max_length=256)
    service: str  # the service's fully qualified name
    description: str | None = None


class CreateDatabaseSchema(Request):
    name: str = Field(min_length=1, max_length=256)
    database: str  # the database's fully qualified name
    description: str | None = None


class CreateTable(Request):
    name: str = Field(min_length=1, max_length=256)
    databaseSchema: str  # noqa: N815
    columns: list[Column]
    description: str | None = None
    owners: list[EntityReference] | None = None


class Entity(Reply):
    """A service, database or schema as OpenMetadata answers: what the sync needs of it."""

    id: uuid.UUID
    name: str
    fullyQualifiedName: str  # noqa: N815


class Table(Reply):
    id: uuid.UUID
    name: str
    fullyQualifiedName: str  # noqa: N815
    description: str | None = None
    columns: list[ColumnReply] = Field(default_factory=list)
    owners: list[EntityReferenceReply] = Field(default_factory=list)
    tags: list[TagLabel] = Field(default_factory=list)
    version: float = 0.1


class User(Reply):
    id: uuid.UUID
    name: str
    email: str | None = None


# api/lineage/addLineage.json and type/entityLineage.json
class ColumnLineage(Request):
    fromColumns: list[str]  # noqa: N815 (fully qualified column names)
    toColumn: str  # noqa: N815


class LineageDetails(Request):
    columnsLineage: list[ColumnLineage] = Field(default_factory=list)  # noqa: N815
    description: str | None = None
    source: str | None = None


class EntitiesEdge(Request):
    fromEntity: EntityReference  # noqa: N815
    toEntity: EntityReference  # noqa: N815
    lineageDetails: LineageDetails | None = None  # noqa: N815


class AddLineage(Request):
    edge: EntitiesEdge


class ColumnLineageReply(Reply):
    fromColumns: list[str] = Field(default_factory=list)  # noqa: N815
    toColumn: str | None = None  # noqa: N815


class LineageDetailsReply(Reply):
    columnsLineage: list[ColumnLineageReply] = Field(default_factory=list)  # noqa: N815


class Edge(Reply):
    fromEntity: uuid.UUID  # noqa: N815
    toEntity: uuid.UUID  # noqa: N815
    lineageDetails: LineageDetailsReply | None = None  # noqa: N815


class EntityLineage(Reply):
    upstreamEdges: list[Edge] = Field(default_factory=list)  # noqa: N815
    downstreamEdges: list[Edge] = Field(default_factory=list)  # noqa: N815


class OpenMetadataError(Exception):
    """OpenMetadata refused a call (its status and message), or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def fqn_path(fqn: str) -> str:
    """A fully qualified name as one path segment."""
    return quote(fqn, safe="")


class OpenMetadataClient:
    """The endpoints the catalog sync uses, grouped as OpenMetadata groups them."""

    def __init__(
        self, base_url: str, token: str, *, timeout_s: float = 30.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/api/v1",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout_s,
            transport=transport,
        )
        self.base_url = base_url.rstrip("/")

    async def __aenter__(self) -> OpenMetadataClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, *, body: Request | None = None, **params: Any) -> Any:
        try:
            response = await self._http.request(
                method,
                path,
                params=params or None,
                json=body.model_dump(mode="json", exclude_none=True) if body else None,
            )
        except httpx.HTTPError as exc:
            raise OpenMetadataError(f"OpenMetadata at {self.base_url} is unreachable: {exc}") from exc
        if response.status_code == 404 and method == "GET":
            return None
        if response.status_code >= 400:
            try:
                message = str(response.json().get("message") or response.text)
            except ValueError:
                message = response.text
            hint = (
                " (check the bot token in LAKEHOUSE_OPENMETADATA_TOKEN)" if response.status_code in (401, 403) else ""
            )
            raise OpenMetadataError(
                f"OpenMetadata refused {method} {path}: HTTP {response.status_code}: {message[:300]}{hint}",
                status=response.status_code,
            )
        return response.json() if response.content else None

    async def _get(self, model: type[ModelT], path: str, **params: Any) -> ModelT | None:
        found = await self._call("GET", path, **params)
        return None if found is None else model.model_validate(found)

    async def database_service(self, name: str) -> Entity | None:
        return await self._get(Entity, f"/services/databaseServices/name/{fqn_path(name)}")

    async def put_database(self, request: CreateDatabase) -> Entity:
        return Entity.model_validate(await self._call("PUT", "/databases", body=request))

    async def put_database_schema(self, request: CreateDatabaseSchema) -> Entity:
        return Entity.model_validate(await self._call("PUT", "/databaseSchemas", body=request))

    async def table(self, fqn: str) -> Table | None:
        return await self._get(Table, f"/tables/name/{fqn_path(fqn)}", fields="columns,owners,tags")

    async def put_table(self, request: CreateTable) -> Table:
        return Table.model_validate(await self._call("PUT", "/tables", body=request))

    async def user(self, name: str) -> User | None:
        return await self._get(User, f"/users/name/{fqn_path(name)}")

    async def upstream_lineage(self, table_fqn: str) -> EntityLineage | None:
        return await self._get(
            EntityLineage, f"/lineage/table/name/{fqn_path(table_fqn)}", upstreamDepth=1, downstreamDepth=0
        )

    async def add_lineage(self, request: AddLineage) -> None:
        await self._call("PUT", "/lineage", body=request)
