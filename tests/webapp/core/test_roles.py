import pytest

from webapp.site.demo import DEMO_ACCOUNTS, create_demo_accounts
from webapp.core.roles import ADMIN, ANNOTATOR, WRITER, create_user_with_role, has_role


@pytest.mark.django_db
def test_demo_accounts_get_their_roles_and_passwords_are_shown_once():
    lines: list[str] = []
    create_demo_accounts(lines.append)
    assert sum("created" in line for line in lines) == len(DEMO_ACCOUNTS)
    from django.contrib.auth import authenticate

    for (username, role), line in zip(DEMO_ACCOUNTS, lines):
        password = line.split(" / ")[1].split()[0]
        user = authenticate(username=username, password=password)
        assert user is not None and has_role(user, role)
    again: list[str] = []
    create_demo_accounts(again.append)
    assert not any("created" in line for line in again)
    assert all("password unchanged" in line for line in again)


@pytest.mark.django_db
def test_roles_are_separate():
    writer, _ = create_user_with_role("w", WRITER)
    annotator, _ = create_user_with_role("a", ANNOTATOR)
    assert has_role(writer, WRITER) and not has_role(writer, ANNOTATOR) and not has_role(writer, ADMIN)
    assert has_role(annotator, ANNOTATOR) and not has_role(annotator, ADMIN)
    assert not writer.is_staff
    with pytest.raises(ValueError, match="unknown role"):
        create_user_with_role("x", "root")
