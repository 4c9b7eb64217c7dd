import { frameworkSuite } from './framework-suite.js'
import { expressFramework } from './frameworks.js'

await frameworkSuite(expressFramework)
