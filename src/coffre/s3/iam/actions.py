"""The IAM and STS actions: parameters in, one IamService call, result XML out.

Each action validates its input (as IAM does, before anything else), authorises the caller
for ``iam:<Action>`` on the resource AWS names for it, then acts inside the caller's tenant
only: another tenant's users, groups, keys and policies are simply not there (NoSuchEntity).
Output element names and nesting follow botocore's IAM model (the shapes every SDK parses).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from coffre.core.errors import AccessDenied, DeleteConflict, NoSuchEntity
from coffre.core.iam import (
    MAX_GROUP_NAME,
    MAX_POLICY_NAME,
    MAX_USER_NAME,
    ROOT_USER,
    IamService,
    InvalidInput,
    check_name,
    check_path,
    check_path_prefix,
    check_tags,
    group_arn,
    parse_policy_arn,
    policy_arn,
    user_arn,
)
from coffre.core.identity import Principal
from coffre.meta.records import AccessKeyRecord, GroupRecord, PolicyRecord, UserRecord
from coffre.s3.authz import global_keys
from coffre.s3.context import Ctx
from coffre.s3.iam.query import Params, member, page, timestamp, truncation
from coffre.s3.xml import Doc


@dataclass
class Call:
    """One IAM call: the request, its parameters and the authenticated caller."""

    ctx: Ctx
    params: Params
    principal: Principal
    # The tags of the user the call acts on (set by user_resource): aws:ResourceTag/<key>.
    resource_tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def tenant(self) -> str:
        return self.principal.tenant_id

    @property
    def iam(self) -> IamService:
        return self.ctx.coffre.iam

    def arn(self, kind: str, path: str, name: str) -> str:
        return f"arn:aws:iam::{self.tenant}:{kind}{path}{name}"

    async def authorize(self, action: str, resource: str, keys: Mapping[str, Sequence[str]] | None = None) -> None:
        """The caller's identity policies must allow ``iam:<action>`` on ``resource`` (a tenant
        root may do anything in its tenant). The refusal names both, as IAM's does."""
        # The global aws:* keys only: no s3:* key ever applies to an IAM action.
        request_keys: dict[str, Sequence[str]] = dict(global_keys(self.ctx, self.principal))
        for k, v in self.resource_tags.items():
            request_keys["aws:resourcetag/" + k.lower()] = [v]
            request_keys["iam:resourcetag/" + k.lower()] = [v]
        request_keys.update(keys or {})
        try:
            await self.ctx.coffre.access.check_identity(self.principal, f"iam:{action}", resource, request_keys)
        except AccessDenied as e:
            raise AccessDenied(f"User: {self.principal.arn} is not authorized to perform: iam:{action} on "
                               f"resource: {resource}") from e

    # The ARN a policy sees for an entity: with its path when it exists (policies may grant by
    # path), with "/" when it does not (authorisation comes before existence, as in IAM).
    async def user_resource(self, name: str) -> str:
        try:
            user = await self.iam.get_user(self.tenant, name)
        except NoSuchEntity:
            return self.arn("user", "/", name)
        self.resource_tags = user.tags
        return user_arn(user)

    async def group_resource(self, name: str) -> str:
        try:
            group, _ = await self.iam.get_group(self.tenant, name)
        except NoSuchEntity:
            return self.arn("group", "/", name)
        return group_arn(group)

    async def key_owner(self) -> tuple[str, str]:
        """The target of a key action without UserName: the caller itself (name, ARN)."""
        if self.principal.is_root:
            return ROOT_USER, f"arn:aws:iam::{self.tenant}:root"
        return self.principal.name, await self.user_resource(self.principal.name)


Action = Callable[[Call], Awaitable[Doc | None]]
IAM_ACTIONS: dict[str, Action] = {}
STS_ACTIONS: dict[str, Action] = {}


def action(name: str, table: dict[str, Action] = IAM_ACTIONS) -> Callable[[Action], Action]:
    def deco(fn: Action) -> Action:
        table[name] = fn
        return fn
    return deco


# -- rendering --
def _user(doc: Doc, user: UserRecord, tag: str = "User", tags: bool = False) -> Doc:
    doc.open(tag).leaf("Path", user.path).leaf("UserName", user.name).leaf("UserId", user.user_id)
    doc.leaf("Arn", user_arn(user)).leaf("CreateDate", timestamp(user.created_at))
    if tags and user.tags:
        _tags(doc, user.tags)
    return doc.close(tag)


def _tags(doc: Doc, tags: Mapping[str, str]) -> Doc:
    doc.open("Tags")
    for k, v in tags.items():
        doc.open("member").leaf("Key", k).leaf("Value", v).close("member")
    return doc.close("Tags")


def _group(doc: Doc, group: GroupRecord, tag: str = "Group") -> Doc:
    doc.open(tag).leaf("Path", group.path).leaf("GroupName", group.name).leaf("GroupId", group.group_id)
    return doc.leaf("Arn", group_arn(group)).leaf("CreateDate", timestamp(group.created_at)).close(tag)


def _policy(doc: Doc, policy: PolicyRecord, attachments: int, tag: str = "Policy") -> Doc:
    doc.open(tag).leaf("PolicyName", policy.name).leaf("PolicyId", policy.policy_id)
    doc.leaf("Arn", policy_arn(policy)).leaf("Path", policy.path).leaf("DefaultVersionId", policy.default_version)
    doc.leaf("AttachmentCount", attachments).leaf("PermissionsBoundaryUsageCount", 0).leaf("IsAttachable", True)
    if policy.description:
        doc.leaf("Description", policy.description)
    doc.leaf("CreateDate", timestamp(policy.created_at)).leaf("UpdateDate", timestamp(policy.updated_at))
    return doc.close(tag)


def _key(doc: Doc, key: AccessKeyRecord, tag: str) -> Doc:
    doc.open(tag)
    if key.principal != ROOT_USER:  # a root key belongs to no user
        doc.leaf("UserName", key.principal)
    doc.leaf("AccessKeyId", key.access_key_id).leaf("Status", key.status.capitalize())
    return doc.leaf("CreateDate", timestamp(key.created_at)).close(tag)


def encoded_document(document: str) -> str:
    """IAM returns policy documents URL-encoded (RFC 3986); SDKs decode them."""
    return quote(document, safe="-_.~")


def _name(call: Call, param: str, max_len: int) -> str:
    value = call.params.required(param)
    check_name(value, member(param), max_len)
    return value


def _optional_user(call: Call) -> str | None:
    value = call.params.get("UserName")
    if value is not None:
        check_name(value, "userName", MAX_USER_NAME * 2)  # existing names: IAM allows 128 here
    return value


def _path(call: Call, param: str = "Path") -> str:
    value = call.params.get(param) or "/"
    check_path(value, member(param))
    return value


def _prefix(call: Call) -> str:
    value = call.params.get("PathPrefix") or "/"
    check_path_prefix(value)
    return value


def _policy_arn(call: Call) -> str:
    value = call.params.required("PolicyArn")
    if len(value) < 20 or len(value) > 2048:
        raise InvalidInput(f"ARN {value[:128]} is not valid.")
    parse_policy_arn(value)
    return value


def _user_listing(doc: Doc, tag: str, users: Sequence[UserRecord]) -> Doc:
    doc.open(tag)
    for u in users:
        _user(doc, u, "member")
    return doc.close(tag)


def _group_listing(doc: Doc, groups: Sequence[GroupRecord]) -> Doc:
    doc.open("Groups")
    for g in groups:
        _group(doc, g, "member")
    return doc.close("Groups")


def _names(doc: Doc, tag: str, names: Sequence[str]) -> Doc:
    doc.open(tag)
    for n in names:
        doc.leaf("member", n)
    return doc.close(tag)


# -- users --
@action("CreateUser")
async def create_user(call: Call) -> Doc:
    name = _name(call, "UserName", MAX_USER_NAME)
    path = _path(call)
    tags = call.params.pairs("Tags")
    keys: dict[str, Sequence[str]] = {f"aws:requesttag/{k.lower()}": [v] for k, v in tags}
    if tags:
        keys["aws:tagkeys"] = [k for k, _ in tags]
    await call.authorize("CreateUser", call.arn("user", path, name), keys)
    # Validated as pairs first: a key given twice would silently collapse in a dict.
    user = await call.iam.create_user(call.tenant, name, path, check_tags(tags))
    return _user(Doc(), user, tags=True)


@action("GetUser")
async def get_user(call: Call) -> Doc:
    name = _optional_user(call)
    if name is None and call.principal.is_root:
        root = f"arn:aws:iam::{call.tenant}:root"
        await call.authorize("GetUser", root)
        tenant = await call.ctx.coffre.meta.get_tenant(call.tenant)
        doc = Doc().open("User").leaf("UserId", call.tenant).leaf("Arn", root)
        return doc.leaf("CreateDate", timestamp(tenant.created_at if tenant else 0)).close("User")
    target = name if name is not None else call.principal.name
    await call.authorize("GetUser", await call.user_resource(target))
    return _user(Doc(), await call.iam.get_user(call.tenant, target), tags=True)


@action("ListUsers")
async def list_users(call: Call) -> Doc:
    prefix = _prefix(call)
    await call.authorize("ListUsers", call.arn("user", "/", ""))
    users, marker = page(await call.iam.list_users(call.tenant, prefix), call.params, lambda u: u.name)
    return truncation(_user_listing(Doc(), "Users", users), marker)


@action("UpdateUser")
async def update_user(call: Call) -> None:
    name = _name(call, "UserName", MAX_USER_NAME * 2)
    new_path = call.params.get("NewPath")
    if new_path is not None:
        check_path(new_path, "newPath")
    await call.authorize("UpdateUser", await call.user_resource(name))
    await call.iam.update_user(call.tenant, name, new_path, call.params.get("NewUserName"))
    return None


@action("DeleteUser")
async def delete_user(call: Call) -> None:
    name = _name(call, "UserName", MAX_USER_NAME * 2)
    await call.authorize("DeleteUser", await call.user_resource(name))
    await call.iam.delete_user(call.tenant, name)
    return None


@action("TagUser")
async def tag_user(call: Call) -> None:
    name = _name(call, "UserName", MAX_USER_NAME * 2)
    tags = call.params.pairs("Tags")
    keys: dict[str, Sequence[str]] = {f"aws:requesttag/{k.lower()}": [v] for k, v in tags}
    keys["aws:tagkeys"] = [k for k, _ in tags]
    await call.authorize("TagUser", await call.user_resource(name), keys)
    await call.iam.tag_user(call.tenant, name, tags)
    return None


@action("UntagUser")
async def untag_user(call: Call) -> None:
    name = _name(call, "UserName", MAX_USER_NAME * 2)
    keys = call.params.members("TagKeys")
    await call.authorize("UntagUser", await call.user_resource(name), {"aws:tagkeys": keys})
    await call.iam.untag_user(call.tenant, name, keys)
    return None


@action("ListUserTags")
async def list_user_tags(call: Call) -> Doc:
    name = _name(call, "UserName", MAX_USER_NAME * 2)
    await call.authorize("ListUserTags", await call.user_resource(name))
    user = await call.iam.get_user(call.tenant, name)
    items, marker = page(list(user.tags.items()), call.params, lambda kv: kv[0])
    return truncation(_tags(Doc(), dict(items)), marker)


# -- access keys --
async def _key_target(call: Call) -> tuple[str, str]:
    """(user for IamService, resource ARN) of a key action: UserName, else the caller."""
    name = _optional_user(call)
    if name is None:
        return await call.key_owner()
    if name.lower() == ROOT_USER:
        # IamService reads "root" as the tenant root; a UserName is only ever a user, and no user
        # may be called "root": a right over "every user's keys" must not reach the root's.
        raise NoSuchEntity(f"The user with name {name} cannot be found.")
    return name, await call.user_resource(name)


@action("CreateAccessKey")
async def create_access_key(call: Call) -> Doc:
    user, resource = await _key_target(call)
    await call.authorize("CreateAccessKey", resource)
    key, secret = await call.iam.create_access_key(call.tenant, user)
    doc = Doc().open("AccessKey")
    if key.principal != ROOT_USER:
        doc.leaf("UserName", key.principal)
    doc.leaf("AccessKeyId", key.access_key_id).leaf("Status", "Active").leaf("SecretAccessKey", secret)
    return doc.leaf("CreateDate", timestamp(key.created_at)).close("AccessKey")


@action("ListAccessKeys")
async def list_access_keys(call: Call) -> Doc:
    user, resource = await _key_target(call)
    await call.authorize("ListAccessKeys", resource)
    keys = await call.iam.list_access_keys(call.tenant, user)
    chunk, marker = page(keys, call.params, lambda k: k.access_key_id)
    doc = Doc().open("AccessKeyMetadata")
    for k in chunk:
        _key(doc, k, "member")
    return truncation(doc.close("AccessKeyMetadata"), marker)


def _access_key_id(call: Call) -> str:
    value = call.params.required("AccessKeyId")
    if not 16 <= len(value) <= 128 or not value.replace("_", "").isalnum() or not value.isascii():
        raise InvalidInput(f"The specified value for accessKeyId is invalid: {value[:128]}")
    return value


@action("UpdateAccessKey")
async def update_access_key(call: Call) -> None:
    akid = _access_key_id(call)
    status = call.params.required("Status")
    user, resource = await _key_target(call)
    await call.authorize("UpdateAccessKey", resource)
    await call.iam.update_access_key(call.tenant, akid, status, user)
    return None


@action("DeleteAccessKey")
async def delete_access_key(call: Call) -> None:
    akid = _access_key_id(call)
    user, resource = await _key_target(call)
    await call.authorize("DeleteAccessKey", resource)
    await call.iam.delete_access_key(call.tenant, akid, user)
    return None


@action("GetAccessKeyLastUsed")
async def get_access_key_last_used(call: Call) -> Doc:
    """Which user owns a key. coffre does not record when keys are used (that would be a write
    on every request): the answer is the one IAM gives for a key never used."""
    akid = _access_key_id(call)
    try:
        key = await call.iam.get_access_key(call.tenant, akid)
    except NoSuchEntity:
        key = None
    if key is None or key.principal == ROOT_USER:
        resource = f"arn:aws:iam::{call.tenant}:root" if key is not None else call.arn("user", "/", "")
    else:
        resource = await call.user_resource(key.principal)
    await call.authorize("GetAccessKeyLastUsed", resource)
    if key is None:
        raise NoSuchEntity(f"The Access Key with id {akid} cannot be found.")
    doc = Doc()
    if key.principal != ROOT_USER:
        doc.leaf("UserName", key.principal)
    return doc.open("AccessKeyLastUsed").leaf("ServiceName", "N/A").leaf("Region", "N/A").close("AccessKeyLastUsed")


# -- inline policies of users and groups --
_OWNER_MAX = {"user": MAX_USER_NAME * 2, "group": MAX_GROUP_NAME}


async def _owner_resource(call: Call, kind: str, owner: str) -> str:
    """The ARN of the user or group an inline-policy or attachment action is about."""
    return await (call.user_resource(owner) if kind == "user" else call.group_resource(owner))


def _inline(kind: str) -> None:
    """Register Put/Get/Delete/List{User,Group}Policy for one kind of owner."""
    cap = kind.capitalize()
    owner_param = f"{cap}Name"
    owner_max = _OWNER_MAX[kind]

    async def put(call: Call) -> None:
        owner = _name(call, owner_param, owner_max)
        name = _name(call, "PolicyName", MAX_POLICY_NAME)
        document = call.params.required("PolicyDocument")
        await call.authorize(f"Put{cap}Policy", await _owner_resource(call, kind, owner))
        await call.iam.put_inline_policy(call.tenant, kind, owner, name, document)
        return None

    async def get(call: Call) -> Doc:
        owner = _name(call, owner_param, owner_max)
        name = _name(call, "PolicyName", MAX_POLICY_NAME)
        await call.authorize(f"Get{cap}Policy", await _owner_resource(call, kind, owner))
        document = await call.iam.get_inline_policy(call.tenant, kind, owner, name)
        stored = await call.iam.stored_name(call.tenant, kind, owner)
        return Doc().leaf(owner_param, stored).leaf("PolicyName", name) \
            .leaf("PolicyDocument", encoded_document(document))

    async def delete(call: Call) -> None:
        owner = _name(call, owner_param, owner_max)
        name = _name(call, "PolicyName", MAX_POLICY_NAME)
        await call.authorize(f"Delete{cap}Policy", await _owner_resource(call, kind, owner))
        await call.iam.delete_inline_policy(call.tenant, kind, owner, name)
        return None

    async def listing(call: Call) -> Doc:
        owner = _name(call, owner_param, owner_max)
        await call.authorize(f"List{cap}Policies", await _owner_resource(call, kind, owner))
        names = await call.iam.list_inline_policies(call.tenant, kind, owner)
        chunk, marker = page(names, call.params, lambda n: n)
        return truncation(_names(Doc(), "PolicyNames", chunk), marker)

    IAM_ACTIONS[f"Put{cap}Policy"] = put
    IAM_ACTIONS[f"Get{cap}Policy"] = get
    IAM_ACTIONS[f"Delete{cap}Policy"] = delete
    IAM_ACTIONS[f"List{cap}Policies"] = listing


# -- managed policies and their attachments --
@action("CreatePolicy")
async def create_policy(call: Call) -> Doc:
    name = _name(call, "PolicyName", MAX_POLICY_NAME)
    path = call.params.get("Path") or "/"
    document = call.params.required("PolicyDocument")
    description = call.params.get("Description") or ""
    if call.params.pairs("Tags"):
        raise InvalidInput("Tags on managed policies are not supported by coffre.")
    await call.authorize("CreatePolicy", call.arn("policy", path, name))
    policy = await call.iam.create_policy(call.tenant, name, document, path, description)
    return _policy(Doc(), policy, 0)


@action("GetPolicy")
async def get_policy(call: Call) -> Doc:
    arn = _policy_arn(call)
    await call.authorize("GetPolicy", arn)
    policy = await call.iam.get_policy(call.tenant, arn)
    return _policy(Doc(), policy, await call.iam.attachment_count(call.tenant, policy))


def _version(doc: Doc, policy: PolicyRecord, tag: str) -> Doc:
    doc.open(tag).leaf("Document", encoded_document(policy.document)).leaf("VersionId", policy.default_version)
    return doc.leaf("IsDefaultVersion", True).leaf("CreateDate", timestamp(policy.updated_at)).close(tag)


@action("GetPolicyVersion")
async def get_policy_version(call: Call) -> Doc:
    """coffre keeps one version of a managed policy: the current (default) one."""
    arn = _policy_arn(call)
    version = call.params.required("VersionId")
    await call.authorize("GetPolicyVersion", arn)
    policy = await call.iam.get_policy(call.tenant, arn)
    if version != policy.default_version:
        raise NoSuchEntity(f"Policy {arn} version {version[:32]} does not exist or is not attachable.")
    return _version(Doc(), policy, "PolicyVersion")


@action("ListPolicyVersions")
async def list_policy_versions(call: Call) -> Doc:
    arn = _policy_arn(call)
    await call.authorize("ListPolicyVersions", arn)
    policy = await call.iam.get_policy(call.tenant, arn)
    doc = Doc().open("Versions")
    _version(doc, policy, "member")
    return truncation(doc.close("Versions"), None)


@action("CreatePolicyVersion")
async def create_policy_version(call: Call) -> Doc:
    """A new default version replaces the document; coffre keeps the default version only, so a
    version that would not be the default cannot be stored (docs/iam.md)."""
    arn = _policy_arn(call)
    document = call.params.required("PolicyDocument")
    if not call.params.boolean("SetAsDefault"):
        raise InvalidInput("coffre keeps only the default version of a managed policy: SetAsDefault must be true.")
    await call.authorize("CreatePolicyVersion", arn)
    return _version(Doc(), await call.iam.create_policy_version(call.tenant, arn, document), "PolicyVersion")


@action("DeletePolicyVersion")
async def delete_policy_version(call: Call) -> None:
    arn = _policy_arn(call)
    version = call.params.required("VersionId")
    await call.authorize("DeletePolicyVersion", arn)
    policy = await call.iam.get_policy(call.tenant, arn)
    if version == policy.default_version:
        raise DeleteConflict("Cannot delete the default version of a policy.")
    raise NoSuchEntity(f"Policy {arn} version {version[:32]} does not exist.")


@action("SetDefaultPolicyVersion")
async def set_default_policy_version(call: Call) -> None:
    arn = _policy_arn(call)
    version = call.params.required("VersionId")
    await call.authorize("SetDefaultPolicyVersion", arn)
    policy = await call.iam.get_policy(call.tenant, arn)
    if version != policy.default_version:
        raise NoSuchEntity(f"Policy {arn} version {version[:32]} does not exist.")
    return None


@action("ListEntitiesForPolicy")
async def list_entities_for_policy(call: Call) -> Doc:
    arn = _policy_arn(call)
    entity_filter = call.params.get("EntityFilter")
    if entity_filter not in (None, "User", "Group", "Role", "LocalManagedPolicy", "AWSManagedPolicy"):
        raise InvalidInput(f"Invalid EntityFilter: {entity_filter[:32]}")
    prefix = _prefix(call)
    await call.authorize("ListEntitiesForPolicy", arn)
    users, groups = await call.iam.list_entities_for_policy(call.tenant, arn)
    entities: list[tuple[str, UserRecord | GroupRecord]] = []
    if entity_filter in (None, "User"):
        entities += [("user", u) for u in users if u.path.startswith(prefix)]
    if entity_filter in (None, "Group"):
        entities += [("group", g) for g in groups if g.path.startswith(prefix)]
    def entity_key(e: tuple[str, UserRecord | GroupRecord]) -> str:
        return f"{e[0]}/{e[1].name}"

    chunk, marker = page(entities, call.params, entity_key)
    doc = Doc().open("PolicyGroups")
    for _, g in chunk:
        if isinstance(g, GroupRecord):
            doc.open("member").leaf("GroupName", g.name).leaf("GroupId", g.group_id).close("member")
    doc.close("PolicyGroups").open("PolicyUsers")
    for _, u in chunk:
        if isinstance(u, UserRecord):
            doc.open("member").leaf("UserName", u.name).leaf("UserId", u.user_id).close("member")
    return truncation(doc.close("PolicyUsers").open("PolicyRoles").close("PolicyRoles"), marker)


@action("ListPolicies")
async def list_policies(call: Call) -> Doc:
    scope = call.params.get("Scope") or "All"
    if scope not in ("All", "AWS", "Local"):
        raise InvalidInput(f"1 validation error detected: Value '{scope[:32]}' at 'scope' failed to satisfy "
                           "constraint: Member must satisfy enum value set: [All, AWS, Local]")
    only_attached = call.params.boolean("OnlyAttached") or False
    prefix = _prefix(call)
    await call.authorize("ListPolicies", call.arn("policy", "/", ""))
    # AWS-managed policies do not exist in coffre: Scope=AWS lists nothing.
    policies = [] if scope == "AWS" else await call.iam.list_policies(call.tenant)
    policies = [p for p in policies if p.path.startswith(prefix)]
    counted: list[tuple[PolicyRecord, int]] = []
    for p in policies:
        n = await call.iam.attachment_count(call.tenant, p) if only_attached else -1
        if not only_attached or n > 0:
            counted.append((p, n))
    chunk, marker = page(counted, call.params, lambda pc: pc[0].name)
    doc = Doc().open("Policies")
    for p, n in chunk:
        _policy(doc, p, n if n >= 0 else await call.iam.attachment_count(call.tenant, p), "member")
    return truncation(doc.close("Policies"), marker)


@action("DeletePolicy")
async def delete_policy(call: Call) -> None:
    arn = _policy_arn(call)
    await call.authorize("DeletePolicy", arn)
    await call.iam.delete_policy(call.tenant, arn)
    return None


def _attachments(kind: str) -> None:
    """Register Attach/Detach{User,Group}Policy and ListAttached{User,Group}Policies."""
    cap = kind.capitalize()
    owner_param = f"{cap}Name"
    owner_max = _OWNER_MAX[kind]

    async def attach(call: Call) -> None:
        owner = _name(call, owner_param, owner_max)
        arn = _policy_arn(call)
        await call.authorize(f"Attach{cap}Policy", await _owner_resource(call, kind, owner), {"iam:policyarn": [arn]})
        await call.iam.attach_policy(call.tenant, kind, owner, arn)
        return None

    async def detach(call: Call) -> None:
        owner = _name(call, owner_param, owner_max)
        arn = _policy_arn(call)
        await call.authorize(f"Detach{cap}Policy", await _owner_resource(call, kind, owner), {"iam:policyarn": [arn]})
        await call.iam.detach_policy(call.tenant, kind, owner, arn)
        return None

    async def listing(call: Call) -> Doc:
        owner = _name(call, owner_param, owner_max)
        prefix = _prefix(call)
        await call.authorize(f"ListAttached{cap}Policies", await _owner_resource(call, kind, owner))
        policies = [p for p in await call.iam.list_attached_policies(call.tenant, kind, owner)
                    if p.path.startswith(prefix)]
        chunk, marker = page(policies, call.params, lambda p: p.name)
        doc = Doc().open("AttachedPolicies")
        for p in chunk:
            doc.open("member").leaf("PolicyName", p.name).leaf("PolicyArn", policy_arn(p)).close("member")
        return truncation(doc.close("AttachedPolicies"), marker)

    IAM_ACTIONS[f"Attach{cap}Policy"] = attach
    IAM_ACTIONS[f"Detach{cap}Policy"] = detach
    IAM_ACTIONS[f"ListAttached{cap}Policies"] = listing


# -- groups --
@action("CreateGroup")
async def create_group(call: Call) -> Doc:
    name = _name(call, "GroupName", MAX_GROUP_NAME)
    path = _path(call)
    await call.authorize("CreateGroup", call.arn("group", path, name))
    return _group(Doc(), await call.iam.create_group(call.tenant, name, path))


@action("GetGroup")
async def get_group(call: Call) -> Doc:
    name = _name(call, "GroupName", MAX_GROUP_NAME)
    await call.authorize("GetGroup", await call.group_resource(name))
    group, members = await call.iam.get_group(call.tenant, name)
    chunk, marker = page(members, call.params, lambda u: u.name)
    return truncation(_user_listing(_group(Doc(), group), "Users", chunk), marker)


@action("ListGroups")
async def list_groups(call: Call) -> Doc:
    prefix = _prefix(call)
    await call.authorize("ListGroups", call.arn("group", "/", ""))
    groups, marker = page(await call.iam.list_groups(call.tenant, prefix), call.params, lambda g: g.name)
    return truncation(_group_listing(Doc(), groups), marker)


@action("DeleteGroup")
async def delete_group(call: Call) -> None:
    name = _name(call, "GroupName", MAX_GROUP_NAME)
    await call.authorize("DeleteGroup", await call.group_resource(name))
    await call.iam.delete_group(call.tenant, name)
    return None


@action("AddUserToGroup")
async def add_user_to_group(call: Call) -> None:
    group = _name(call, "GroupName", MAX_GROUP_NAME)
    user = _name(call, "UserName", MAX_USER_NAME * 2)
    await call.authorize("AddUserToGroup", await call.group_resource(group))
    await call.iam.add_user_to_group(call.tenant, group, user)
    return None


@action("RemoveUserFromGroup")
async def remove_user_from_group(call: Call) -> None:
    group = _name(call, "GroupName", MAX_GROUP_NAME)
    user = _name(call, "UserName", MAX_USER_NAME * 2)
    await call.authorize("RemoveUserFromGroup", await call.group_resource(group))
    await call.iam.remove_user_from_group(call.tenant, group, user)
    return None


@action("ListGroupsForUser")
async def list_groups_for_user(call: Call) -> Doc:
    user = _name(call, "UserName", MAX_USER_NAME * 2)
    await call.authorize("ListGroupsForUser", await call.user_resource(user))
    groups, marker = page(await call.iam.list_groups_for_user(call.tenant, user), call.params, lambda g: g.name)
    return truncation(_group_listing(Doc(), groups), marker)


for _kind in ("user", "group"):
    _inline(_kind)
    _attachments(_kind)


# -- STS --
@action("GetCallerIdentity", STS_ACTIONS)
async def get_caller_identity(call: Call) -> Doc:
    """Who the caller is; needs no permission (as on AWS: the answer is in any AccessDenied)."""
    if call.principal.is_root:
        user_id, arn = call.tenant, f"arn:aws:iam::{call.tenant}:root"
    else:
        user = await call.iam.get_user(call.tenant, call.principal.name)
        user_id, arn = user.user_id, user_arn(user)
    return Doc().leaf("UserId", user_id).leaf("Account", call.tenant).leaf("Arn", arn)
