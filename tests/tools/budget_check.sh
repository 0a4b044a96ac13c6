# Sourced by the test scripts that compare a figure with its budget
# (tests/tools/budgets.sh holds the numbers).
source "$(dirname "${BASH_SOURCE[0]}")/budgets.sh"

# check_budget LABEL FIGURE BUDGET_NAME UNIT
# Prints the figure, its budget and the headroom left; returns 1, with a
# line naming the figure, when the figure exceeds the budget or is not a
# number (a figure the test failed to read must not pass).
check_budget() {
  local label=$1 figure=$2 name=$3 unit=$4
  local budget=${!name:-}
  if [[ ! "$budget" =~ ^[0-9]+$ ]]; then
    echo "FAIL: $label: no budget $name in tests/tools/budgets.sh"
    return 1
  fi
  if [[ ! "$figure" =~ ^[0-9]+$ ]]; then
    echo "FAIL: $label: could not measure it (got '$figure'), budget $budget $unit"
    return 1
  fi
  if (( figure > budget )); then
    echo "FAIL: $label $figure $unit exceeds its budget of $budget $unit by $((figure - budget)) ($name in tests/tools/budgets.sh)"
    return 1
  fi
  echo "budget ok: $label $figure $unit <= $budget $unit, headroom $((budget - figure)) $unit"
}
