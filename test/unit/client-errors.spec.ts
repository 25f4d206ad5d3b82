/** lib/client-errors.ts: the parser's refusals in the shop's error shape. */
import { clientErrorResponse } from "../../lib/client-errors";

function parse(raw: string) {
	const [head, body] = raw.split("\r\n\r\n");
	const [statusLine, ...headers] = head.split("\r\n");
	return { statusLine, headers: Object.fromEntries(headers.map((h) => h.split(": "))), body: JSON.parse(body), bodyBytes: Buffer.byteLength(body) };
}

describe("clientErrorResponse", () => {
	test.each([
		["HPE_HEADER_OVERFLOW", "HTTP/1.1 431 Request Header Fields Too Large", "HEADERS_TOO_LARGE"],
		["ERR_HTTP_REQUEST_TIMEOUT", "HTTP/1.1 408 Request Timeout", "REQUEST_TIMEOUT"],
		["HPE_INVALID_METHOD", "HTTP/1.1 400 Bad Request", "MALFORMED_REQUEST"],
		[undefined, "HTTP/1.1 400 Bad Request", "MALFORMED_REQUEST"],
	])("%s → %s, JSON with the type, closing the connection", (code, statusLine, type) => {
		const res = parse(clientErrorResponse(code));
		expect(res.statusLine).toBe(statusLine);
		expect(res.body).toMatchObject({ code: Number(statusLine.split(" ")[1]), type, message: expect.any(String) });
		expect(res.headers).toMatchObject({ "Content-Type": "application/json; charset=utf-8", "X-Content-Type-Options": "nosniff", Connection: "close", "Content-Length": String(res.bodyBytes) });
	});
});
