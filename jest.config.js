/** Tests are compiled by `npm run build` into dist/ and run as plain JavaScript (no transform). */
module.exports = {
  projects: [
    {
      displayName: 'unit',
      testEnvironment: 'node',
      testMatch: ['<rootDir>/dist/test/unit/**/*.test.js'],
    },
    {
      displayName: 'integration',
      testEnvironment: 'node',
      testMatch: ['<rootDir>/dist/test/integration/**/*.test.js'],
    },
  ],
};
