// autocannon ships no types; bench-runner.ts types the part it uses structurally.
declare module 'autocannon'
