/** lib/request-target.ts: one spelling of each address for routes, limits and the response cache. */
import { hostHeaderProblem, normalizeRequestTarget } from "../../lib/request-target";

describe("normalizeRequestTarget", () => {
	test.each<[string, string, string | undefined]>([
		// origin-form without escapes: as it is
		["/api/products?pageSize=20", "/api/products?pageSize=20", undefined],
		["/", "/", undefined],
		["*", "*", undefined],
		// absolute-form: the path and query, and the host that replaces Host
		["http://shop.example/api/products?page=2", "/api/products?page=2", "shop.example"],
		["HTTPS://shop.example:8443/api/health", "/api/health", "shop.example:8443"],
		["http://shop.example", "/", "shop.example"],
		["http://shop.example?x=1", "/?x=1", "shop.example"],
		["http://user:pw@shop.example/api/health", "/api/health", "shop.example"],
		// escaped letters, digits and -_~ in the path mean themselves, in either case
		["/api/%70roducts", "/api/products", undefined],
		["/api/%50RODUCTS/%7e%5F%2d%31", "/api/PRODUCTS/~_-1", undefined],
		["http://shop.example/api/%70roducts", "/api/products", "shop.example"],
		// other escapes stay: reserved characters, non-ASCII, `.`, `%` itself, malformed ones
		["/api/products/a%2Fb", "/api/products/a%2Fb", undefined],
		["/api/products/caf%C3%A9", "/api/products/caf%C3%A9", undefined],
		["/api/products/%2E%2E/reviews", "/api/products/%2E%2E/reviews", undefined],
		["/api/products/100%25", "/api/products/100%25", undefined],
		["/api/products/%zz%4", "/api/products/%zz%4", undefined],
		// a path with a malformed escape is left whole: decoding next to it could make a new escape
		["/api/%%37%30roducts", "/api/%%37%30roducts", undefined],
		["/api/%70roducts/100%", "/api/%70roducts/100%", undefined],
		// an empty host: the caller refuses it
		["http:///api/health", "/api/health", ""],
		// the query is the action's to decode
		["/api/search?q=%70ot", "/api/search?q=%70ot", undefined],
		["/api/%73earch?q=%70ot", "/api/search?q=%70ot", undefined],
	])("%s → %s", (target, url, host) => {
		expect(normalizeRequestTarget(target)).toEqual({ url, host });
	});
});

describe("the Host header (RFC 9112 3.2)", () => {
	test.each([
		["1.1", ["Host", "shop.example"], null],
		["1.1", ["host", "shop.example", "Accept", "*/*"], null],
		["1.1", ["Accept", "*/*"], "An HTTP/1.1 request must name its Host"],
		["1.0", [], null],
		["1.1", ["Host", "a.example", "HOST", "b.example"], "The request has more than one Host header"],
		["1.0", ["Host", "a.example", "host", "a.example"], "The request has more than one Host header"],
		// A header whose value is "host" is not a Host header.
		["1.1", ["X-Forwarded-Host", "host", "Host", "a.example"], null],
	])("HTTP/%s with %j → %j", (version, raw, problem) => {
		expect(hostHeaderProblem(version, raw)).toBe(problem);
	});
});
