# label z is not declared
@problemName BadLabel
@dimensions 1
@classLabel true x y
@data
1,2,3:x
1,2,3:z
