/** Two projects: pure unit tests and broker-backed integration tests; infra tests run via scripts/test-infra.sh. */
const base = {
	testEnvironment: "node",
	transform: { "^.+\\.(t|j)s$": ["@swc/jest"] },
	transformIgnorePatterns: ["/node_modules/(?!(jose|@apidevtools/json-schema-ref-parser)/)"],
	cacheDirectory: "<rootDir>/.jest-cache",
	moduleFileExtensions: ["ts", "js", "json"],
};
module.exports = {
	projects: [
		{ ...base, displayName: "unit", testMatch: ["<rootDir>/test/unit/**/*.spec.ts"] },
		{ ...base, displayName: "integration", testMatch: ["<rootDir>/test/integration/**/*.spec.ts"] },
		{ ...base, displayName: "infra", testMatch: ["<rootDir>/test/infra/**/*.spec.ts"] },
	],
};
