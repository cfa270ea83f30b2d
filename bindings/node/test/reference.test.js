// The same scenarios against the npm socket.io Server: what iobus must match.
"use strict";

const { defineScenarios } = require("./scenarios");
const { Server } = require("socket.io");

defineScenarios("socket.io", (...args) => new Server(...args));
