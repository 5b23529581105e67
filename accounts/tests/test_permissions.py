from __future__ import annotations

import itertools

from accounts.permissions import ROLE_PERMISSIONS, Perm, Role, grantable_roles, role_has


def test_it_gives_every_role_read_access():
    for role in Role:
        assert role_has(role, Perm.ACCOUNT_VIEW)
        assert role_has(role, Perm.REPORTS_VIEW)


def test_it_keeps_analysts_read_only():
    analyst = ROLE_PERMISSIONS[Role.ANALYST]
    assert not any(p.value.endswith((".edit", ".manage", ".settings")) for p in analyst)


def test_it_orders_roles_as_strict_supersets():
    order = [Role.ANALYST, Role.MARKETER, Role.ADMIN, Role.OWNER]
    for lower, higher in itertools.pairwise(order):
        assert ROLE_PERMISSIONS[lower] < ROLE_PERMISSIONS[higher]


def test_it_reserves_owner_management_for_owners():
    assert [r for r in Role if role_has(r, Perm.OWNERS_MANAGE)] == [Role.OWNER]


def test_it_lets_members_grant_only_roles_up_to_their_own():
    assert Role.OWNER not in grantable_roles(Role.ADMIN)
    assert set(grantable_roles(Role.OWNER)) == set(Role)
    assert grantable_roles(Role.ANALYST) == [Role.ANALYST]
    assert grantable_roles("nonsense") == []
