/**
 * The answer to a request Node's HTTP parser refused before any shop code ran (a malformed request
 * line, headers too large, headers or a body that never finished), in the shop's error shape. Node's
 * own is an empty body without a type, which a client parsing every error as JSON fails on.
 */
import { STATUS_CODES } from "node:http";

const ANSWERS: Record<string, { status: number; type: string; message: string }> = {
	HPE_HEADER_OVERFLOW: { status: 431, type: "HEADERS_TOO_LARGE", message: "Request headers too large (the URL included)" },
	HPE_CHUNK_EXTENSIONS_OVERFLOW: { status: 413, type: "PAYLOAD_TOO_LARGE", message: "Chunk extensions too large" },
	ERR_HTTP_REQUEST_TIMEOUT: { status: 408, type: "REQUEST_TIMEOUT", message: "The request was not received in time" },
};
const MALFORMED = { status: 400, type: "MALFORMED_REQUEST", message: "Malformed HTTP request" };

const answerFor = (code: string | undefined) => (code && ANSWERS[code]) || MALFORMED;

/** The status clientErrorResponse answers a parser error's code with. */
export const clientErrorStatus = (code: string | undefined): number => answerFor(code).status;

/** The raw HTTP/1.1 response for a parser error's code; the connection closes after it. */
export function clientErrorResponse(code: string | undefined): string {
	const { status, type, message } = answerFor(code);
	const body = JSON.stringify({ name: "ClientError", message, code: status, type, data: null });
	return [
		`HTTP/1.1 ${status} ${STATUS_CODES[status]}`,
		"Content-Type: application/json; charset=utf-8",
		`Content-Length: ${Buffer.byteLength(body)}`,
		"X-Content-Type-Options: nosniff",
		"Cache-Control: no-store",
		"Connection: close",
		"",
		body,
	].join("\r\n");
}
