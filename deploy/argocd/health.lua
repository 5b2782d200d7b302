-- Argo CD health check for modelrollout.io/ModelDeployment.
-- Install as resource.customizations.health.modelrollout.io_ModelDeployment in argocd-cm
-- (see docs/argocd.md). Written for Argo CD's Lua sandbox: Lua 5.1 with the base and table
-- libraries only, no string/math/io, so it uses just `..`, tostring and table.concat.
--
-- Order matters, as in Argo Rollouts' check:
--   1. the operator has not seen the latest spec yet        -> Progressing
--   2. the operator reports Degraded=True (rollback, bad spec) -> Degraded
--   3. spec.paused or phase Paused                          -> Suspended
--   4. the phase                                            -> Healthy / Progressing / Degraded
local hs = {}

local function condition(status, ctype)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function short(revision)
  if revision == nil then
    return "none"
  end
  return tostring(revision)
end

local function with_message(text, status)
  if status ~= nil and status.message ~= nil and status.message ~= "" then
    return text .. ": " .. status.message
  end
  return text
end

local function step_text(spec, status)
  local steps = nil
  if spec ~= nil and spec.strategy ~= nil and spec.strategy.canary ~= nil then
    steps = spec.strategy.canary.steps
  end
  local weight = status.canaryWeight or 0
  local text = "canary " .. short(status.canaryRevision) .. " at " .. tostring(weight) .. "%"
  if status.currentStep ~= nil and steps ~= nil then
    text = text .. " (step " .. tostring(status.currentStep + 1) .. "/" .. tostring(#steps) .. ")"
  end
  return text
end

local status = obj.status
local spec = obj.spec or {}

if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the modelrollout operator to observe the ModelDeployment"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local degraded = condition(status, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  -- The operator's Degraded message already leads with the reason ("GateFailedErrorRate: ...");
  -- an InvalidSpec message lists the offending fields, so say what kind of problem it is.
  local text = degraded.message
  if text == nil or text == "" then
    text = degraded.reason or "Degraded"
  elseif degraded.reason == "InvalidSpec" then
    text = "Invalid spec: " .. text
  end
  hs.message = text
  return hs
end

local phase = status.phase
if spec.paused == true or phase == "Paused" then
  hs.status = "Suspended"
  if status.canaryRevision ~= nil then
    hs.message = "Rollout paused with " .. step_text(spec, status)
  else
    hs.message = "Rollout paused"
  end
  return hs
end

if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = "Revision " .. short(status.stableRevision) .. " is stable and serves 100% of traffic"
elseif phase == "RolledBack" then
  hs.status = "Degraded"
  hs.message = with_message("Rolled back to revision " .. short(status.stableRevision), status)
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = with_message("Rollout failed", status)
elseif phase == "Progressing" then
  hs.status = "Progressing"
  hs.message = "Progressing: " .. step_text(spec, status)
elseif phase == "Baking" then
  hs.status = "Progressing"
  hs.message = "Baking revision " .. short(status.stableRevision)
    .. " with revision " .. short(status.previousStableRevision) .. " kept warm"
elseif phase == "Initializing" or phase == nil then
  hs.status = "Progressing"
  hs.message = with_message("Initializing", status)
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
