#include "api/api.h"

int Api() { return Base() + 1; }
