/** Which actions a timed-out call may be sent to again: reads (GET routes, or marked repeatable). */
import { isRepeatable } from "../../mixins/retry-policy";

test.each([
	["a GET route", { rest: "GET /products" }, true],
	["a HEAD route", { rest: "HEAD /products" }, true],
	["a GET route as an object", { rest: { method: "GET", path: "/search" } }, true],
	["marked repeatable (an internal read)", { repeatable: true }, true],
	["a POST route", { rest: "POST /auth/register" }, false],
	["a PATCH route", { rest: "PATCH /me" }, false],
	["GET and POST routes: not every one a read", { rest: ["GET /x", "POST /x"] }, false],
	["internal, not marked", {}, false],
	["a path only (any method)", { rest: "/anything" }, false],
	["unknown", undefined, false],
])("%s → %p", (_what, action, expected) => {
	expect(isRepeatable(action as never)).toBe(expected);
});
