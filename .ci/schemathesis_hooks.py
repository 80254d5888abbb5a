"""schemathesis checks of hookbox's own, loaded by .ci/schemathesis."""

import schemathesis


@schemathesis.check
def client_errors_are_problem_json(ctx, response, case):
    """Every 4xx answers application/problem+json (RFC 9457) with its members."""
    if not 400 <= response.status_code < 500:
        return None
    types = response.headers.get("content-type", [])
    if not any(t.split(";")[0].strip().lower() == "application/problem+json" for t in types):
        raise AssertionError(
            f"{response.status_code} answered with content type "
            f"{', '.join(types) or 'none'}, not application/problem+json"
        )
    body = response.json()
    missing = [k for k in ("type", "title", "status", "detail") if k not in body]
    if missing:
        raise AssertionError(f"the problem lacks {', '.join(missing)}: {body}")
    if body["status"] != response.status_code:
        raise AssertionError(
            f"the problem says status {body['status']}, the response {response.status_code}"
        )
    return None
