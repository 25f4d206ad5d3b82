/**
 * OpenAPI 3 document generated from the gateway's aliases and the actions' fastest-validator
 * params, so the published contract cannot drift from the code.
 */
import { expandRule } from "./param-rules";
import { RESPONSE_SCHEMAS, type SchemaName } from "./openapi-schemas";

export interface RouteInfo {
	method: string;
	/** Full path with `:param` segments, e.g. /api/products/:id */
	path: string;
	action?: string;
	params?: Record<string, any>;
	auth?: "required" | "optional";
	roles?: string[];
	description?: string;
	openapi?: OpenApiNotes;
	/** A route of the shop whose service this gateway has not reached yet: its answers and rules are not known here. */
	unreached?: true;
}

/**
 * What an action declares for its route because the generator cannot read it from the handler
 * (the action property `openapi`, see mixins/types.ts).
 */
type SuccessStatus = 200 | 201 | 202 | 204;

/**
 * The body of a success answer: a schema of lib/openapi-schemas.ts by name (`"Cart"`), or a page of
 * them in the list envelope `{rows, total, page, pageSize, totalPages}` (`{ list: "Order" }`).
 */
export type ResponseBody = SchemaName | { list: SchemaName };

export interface OpenApiNotes {
	/** What the success answers (every 2xx but a 204) carry. */
	response?: ResponseBody;
	/** A refusal whose body is not the error shape, e.g. the health check's 503, which reports the state. */
	errorBodies?: Partial<Record<503, { schema: SchemaName; description: string }>>;
	/** The status of a plain success when the handler sets another than 200 (ctx.meta.$statusCode). */
	success?: Exclude<SuccessStatus, 200>;
	/** Further statuses the route answers, and when, e.g. `{ 409: "Not enough stock" }`; a 2xx here is another success. */
	responses?: Partial<Record<SuccessStatus | 400 | 401 | 402 | 403 | 404 | 409 | 422 | 503, string>>;
	/** Request headers the action reads. */
	headers?: Record<string, { required?: boolean; description: string }>;
	/** Headers of its success answer, with what they say. */
	responseHeaders?: Record<string, string>;
}

type JsonSchema = Record<string, any>;

export function ruleToSchema(raw: any): JsonSchema {
	const rule = expandRule(raw);
	const s: JsonSchema = {};
	switch (rule.type) {
		case "string":
			s.type = "string";
			if (rule.min != null) s.minLength = rule.min;
			if (rule.max != null) s.maxLength = rule.max;
			if (rule.length != null) s.minLength = s.maxLength = rule.length;
			// A character limit checked by `custom` (maxChars in lib/param-rules.ts).
			if (typeof rule.custom?.maxChars === "number") s.maxLength = rule.custom.maxChars;
			if (rule.enum) s.enum = rule.enum;
			// A Unicode-mode pattern (\p{Cc}, ...) means something else, or nothing, in OpenAPI 3.0's
			// ECMA-262 dialect without flags: a client checking it would refuse good values. Left out.
			if (rule.pattern && !(rule.pattern instanceof RegExp && rule.pattern.flags.includes("u"))) s.pattern = String(rule.pattern instanceof RegExp ? rule.pattern.source : rule.pattern);
			break;
		case "email":
			Object.assign(s, { type: "string", format: "email" });
			if (rule.max != null) s.maxLength = rule.max;
			break;
		case "url":
			Object.assign(s, { type: "string", format: "uri" });
			break;
		case "uuid":
			Object.assign(s, { type: "string", format: "uuid" });
			break;
		case "date":
			Object.assign(s, { type: "string", format: "date-time" });
			break;
		case "any":
			// An ISO 8601 date checked by `custom` (isoDateRule in lib/param-rules.ts).
			if (rule.custom?.isoDate) Object.assign(s, { type: "string", format: "date-time" });
			break;
		case "number":
			s.type = rule.integer ? "integer" : "number";
			if (rule.min != null) s.minimum = rule.min;
			if (rule.max != null) s.maximum = rule.max;
			// OpenAPI 3.0: exclusiveMinimum is a flag on minimum.
			if (rule.positive) Object.assign(s, { minimum: 0, exclusiveMinimum: true });
			break;
		case "boolean":
			s.type = "boolean";
			break;
		case "enum":
			s.enum = rule.values;
			break;
		case "equal":
			s.enum = [rule.value];
			break;
		case "array":
			s.type = "array";
			s.items = rule.items ? ruleToSchema(rule.items) : {};
			if (rule.min != null) s.minItems = rule.min;
			if (rule.max != null) s.maxItems = rule.max;
			break;
		case "object":
			Object.assign(s, rule.props ? objectSchema(rule.props) : { type: "object" });
			break;
		case "record":
			Object.assign(s, { type: "object", additionalProperties: rule.value ? ruleToSchema(rule.value) : {} });
			break;
		case "multi":
			s.oneOf = (rule.rules as any[]).map(ruleToSchema);
			break;
		default:
			break;
	}
	if (rule.default !== undefined && typeof rule.default !== "function") s.default = rule.default;
	// fastest-validator's `nullable`: null is taken, and often means something (no limit, no expiry,
	// no parent), so a client generated from the document must be able to send it.
	if (rule.nullable && s.type) {
		s.nullable = true;
		if (s.enum) s.enum = [...s.enum, null];
	}
	return s;
}

function isOptional(raw: any): boolean {
	const r = expandRule(raw);
	return !!(r.optional || r.default !== undefined);
}

export function objectSchema(props: Record<string, any>): JsonSchema {
	const properties: Record<string, JsonSchema> = {};
	const required: string[] = [];
	for (const [name, rule] of Object.entries(props)) {
		if (name.startsWith("$$")) continue;
		if (expandRule(rule).type === "forbidden") continue;
		properties[name] = ruleToSchema(rule);
		if (!isOptional(rule)) required.push(name);
	}
	return { type: "object", properties, ...(required.length ? { required } : {}) };
}

const ERROR_REF = { $ref: "#/components/schemas/Error" };
const errorResponse = (description: string) => ({ description, content: { "application/json": { schema: ERROR_REF } } });
const SUCCESS: Record<number, string> = { 200: "Success", 201: "Created", 202: "Accepted", 204: "No content" };
const successResponse = (status: number, schema: JsonSchema, description = SUCCESS[status] ?? "Success") =>
	status === 204 ? { description } : { description, content: { "application/json": { schema } } };

const schemaRef = (name: string) => ({ $ref: `#/components/schemas/${name}` });
/** The component name of a page of `name`s. */
export const pageName = (name: string) => `${name}Page`;

/** The list envelope of API.md (lib/pagination.ts toPage) around `items`. */
export function pageSchema(items: JsonSchema): JsonSchema {
	return {
		type: "object",
		properties: {
			rows: { type: "array", items },
			total: { type: "integer", minimum: 0 },
			page: { type: "integer", minimum: 1 },
			pageSize: { type: "integer", minimum: 1 },
			totalPages: { type: "integer", minimum: 0 },
		},
		required: ["rows", "total", "page", "pageSize", "totalPages"],
		additionalProperties: false,
	};
}

/**
 * The schema of a success body, recording in `pages` each list envelope it needs as a component.
 * An unknown name is a programming error (TypeScript catches it in the services): it throws.
 */
export function responseSchema(body: ResponseBody | undefined, pages: Set<string> = new Set()): JsonSchema {
	if (body === undefined) return {};
	const name = typeof body === "string" ? body : body.list;
	if (!Object.hasOwn(RESPONSE_SCHEMAS, name)) throw new Error(`Unknown response schema ${JSON.stringify(name)} (lib/openapi-schemas.ts)`);
	if (typeof body === "string") return schemaRef(name);
	pages.add(name);
	return schemaRef(pageName(name));
}

const PARAM = /:([A-Za-z0-9_]+)/g;
/** A path's shape: OpenAPI 3 forbids two templated paths that differ only in their parameters' names. */
const shapeOf = (path: string) => path.replace(PARAM, ":");
/** "idOrSlug" → "id or slug" */
const words = (name: string) => name.replace(/([a-z0-9])([A-Z])/g, "$1 $2").replace(/_/g, " ").toLowerCase();

/**
 * The parameter names of each path shape: per position, the name most of its routes use (the first
 * route's on a tie), so `/products/:idOrSlug` and `/products/:id` become one path key.
 */
function pathParamNames(routes: RouteInfo[]): Map<string, string[]> {
	const counts = new Map<string, Array<Map<string, number>>>();
	for (const r of routes) {
		const names = [...r.path.matchAll(PARAM)].map((m) => m[1]);
		const perPosition = counts.get(shapeOf(r.path)) ?? names.map(() => new Map<string, number>());
		names.forEach((name, i) => perPosition[i].set(name, (perPosition[i].get(name) ?? 0) + 1));
		counts.set(shapeOf(r.path), perPosition);
	}
	const chosen = new Map<string, string[]>();
	for (const [shape, perPosition] of counts) {
		chosen.set(shape, perPosition.map((c) => [...c].reduce((best, next) => (next[1] > best[1] ? next : best))[0]));
	}
	return chosen;
}

export function buildOpenApi(routes: RouteInfo[], info: { title: string; version: string; description?: string }) {
	const paths: Record<string, Record<string, any>> = {};
	// Of two aliases with one method and shape the gateway serves the first, so only that one is documented.
	const seen = new Set<string>();
	const served = routes.filter((r) => {
		const key = `${r.method.toLowerCase()} ${shapeOf(r.path)}`;
		if (["*", "all"].includes(r.method.toLowerCase()) || seen.has(key)) return false;
		return seen.add(key);
	});
	const sorted = [...served].sort((a, b) => a.path.localeCompare(b.path) || a.method.localeCompare(b.method));
	const paramNames = pathParamNames(sorted);
	const pages = new Set<string>();
	for (const r of sorted) {
		const method = r.method.toLowerCase();
		const keyNames = paramNames.get(shapeOf(r.path))!;
		const ownNames: string[] = [];
		const oaPath = r.path.replace(PARAM, (_m, name) => `{${keyNames[ownNames.push(name) - 1]}}`);
		const params = r.params ?? {};
		const notes = r.openapi ?? {};
		const success = notes.success ?? 200;
		const body = responseSchema(notes.response, pages);
		const op: Record<string, any> = {
			operationId: `${method}${oaPath.replace(/[^A-Za-z0-9]+/g, "_")}`,
			summary: r.description ?? r.action ?? `${r.method} ${r.path}`,
			tags: [oaPath.split("/")[2] ?? "api"],
			parameters: ownNames.map((own, i) => ({
				name: keyNames[i],
				in: "path",
				required: true,
				...(own !== keyNames[i] ? { description: words(own) } : {}),
				schema: params[own] ? ruleToSchema(params[own]) : { type: "string" },
			})),
			responses: {
				[success]: successResponse(success, body),
				"400": errorResponse("Malformed request"),
				"422": errorResponse("Validation failed; `data` lists each bad field"),
				"429": errorResponse("Rate limited (see Retry-After)"),
				"503": errorResponse("A service is unavailable"),
			},
		};
		for (const [name, description] of Object.entries(notes.responseHeaders ?? {})) {
			(op.responses[success].headers ??= {})[name] = { description, schema: { type: "string" } };
		}
		// The gateway's revalidation of GET answers (lib/etag.ts).
		if (method === "get" && success === 200) {
			const etag = { description: "A weak validator of this answer, to send back in If-None-Match", schema: { type: "string" } };
			(op.responses["200"].headers ??= {}).ETag = etag;
			op.responses["304"] = { description: "Not modified: the request's If-None-Match names this ETag, still current (no body)", headers: { ETag: etag } };
		}
		for (const [name, h] of Object.entries(notes.headers ?? {})) {
			op.parameters.push({ name, in: "header", required: !!h.required, description: h.description, schema: { type: "string" } });
		}
		const rest = Object.fromEntries(Object.entries(params).filter(([k]) => !ownNames.includes(k) && !k.startsWith("$$")));
		if (["post", "put", "patch"].includes(method)) {
			// A body of optional fields only may be left out (a cancel's `{reason?}`): the gateway takes none as {}.
			if (Object.keys(rest).length) op.requestBody = { required: Object.values(rest).some((rule) => !isOptional(rule)), content: { "application/json": { schema: objectSchema(rest) } } };
			op.responses["413"] = errorResponse("Body larger than 1 MB");
			op.responses["415"] = errorResponse("Body not JSON, or in an encoding or charset the shop does not read");
		} else {
			for (const [name, rule] of Object.entries(rest)) {
				const schema = ruleToSchema(rule);
				// Query strings carry scalars; objects/arrays are described as strings in a query.
				op.parameters.push({ name, in: "query", required: !isOptional(rule), schema: schema.type === "object" ? { type: "string" } : schema });
			}
		}
		if (r.auth || r.roles?.length) {
			op.security = r.auth === "optional" && !r.roles?.length ? [{}, { bearerAuth: [] }] : [{ bearerAuth: [] }];
			op.responses["401"] = errorResponse("Missing, invalid or expired token");
			if (r.roles?.length) {
				op.responses["403"] = errorResponse(`Requires role: ${r.roles.join(", ")}`);
				op.description = `Roles: ${r.roles.join(", ")}`;
			}
		}
		if (ownNames.length) op.responses["404"] = errorResponse("Not found");
		for (const [status, description] of Object.entries(notes.responses ?? {})) {
			op.responses[status] = Number(status) < 300 ? successResponse(Number(status), body, description) : errorResponse(description!);
		}
		for (const [status, b] of Object.entries(notes.errorBodies ?? {})) {
			op.responses[status] = { description: b!.description, content: { "application/json": { schema: responseSchema(b!.schema, pages) } } };
		}
		// Nothing is claimed that is not known: not its success, nor its parameters or security (a generated
		// client would take a guess for the contract). Until its service is reached, the route answers 503.
		if (r.unreached) op.responses = { "503": errorResponse("Its service has not been reachable from this gateway yet"), default: { description: "Described once its service is reached" } };
		if (!op.parameters.length) delete op.parameters;
		(paths[oaPath] ??= {})[method] = op;
	}
	return {
		openapi: "3.0.3",
		info,
		servers: [{ url: "/" }],
		paths,
		components: {
			securitySchemes: { bearerAuth: { type: "http", scheme: "bearer", bearerFormat: "JWT" } },
			schemas: {
				Error: {
					type: "object",
					properties: { name: { type: "string" }, message: { type: "string" }, code: { type: "integer" }, type: { type: "string", nullable: true }, data: { description: "Details (the bad fields of a 422), or null" } },
					required: ["name", "message", "code", "type", "data"],
				},
				// A copy: a consumer that dereferences the document in place must not change the next one.
				...structuredClone(RESPONSE_SCHEMAS),
				...Object.fromEntries([...pages].sort().map((name) => [pageName(name), { description: `A page of ${name}`, ...pageSchema(schemaRef(name)) }])),
			} as Record<string, JsonSchema>,
		},
	};
}

/** The guest cart (API.md): its id comes back on each cart answer to a guest, who sends it with the next cart call. */
export const GUEST_CART_NOTES: OpenApiNotes = {
	headers: { "X-Cart-Id": { description: "A guest's cart, as the last cart answer named it (unset: a new cart; ignored when signed in)" } },
	responseHeaders: { "X-Cart-Id": "The guest's cart: send it with the next cart call, and with register or login to merge it into the user's cart" },
};
