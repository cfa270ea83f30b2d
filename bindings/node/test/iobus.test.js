// The scenarios against the iobus Server.
"use strict";

const { defineScenarios } = require("./scenarios");
const { Server } = require("iobus");

defineScenarios("iobus", (...args) => new Server(...args));
