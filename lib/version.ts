// The version recorded in every manifest; bumped with package.json.
export const VERSION = '0.1.0';
